/* An out-of-tree program built against an installed troupe: spawns an echo
 * actor, sends it a string from outside, and checks what came back. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <troupe.h>

static _Atomic int echoed;

static tr_status echo(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  const char *s;
  size_t n;
  tr_status st = tr_msg_get_str(msg, &s, &n);
  if (st == TR_OK && n == 5 && memcmp(s, "hello", 5) == 0)
    atomic_store(&echoed, 1);
  return st;
}

int main(void) {
  tr_system *sys;
  tr_ref r;
  tr_actor_spec spec = {.name = "echo", .behaviour = echo};
  if (tr_system_new(NULL, &sys) != TR_OK ||
      tr_spawn(tr_system_ctx(sys), &spec, NULL, &r) != TR_OK || tr_system_start(sys) != TR_OK ||
      tr_send_str(tr_system_ctx(sys), r, 1, "hello", 5) != TR_OK || tr_system_wait(sys) != TR_OK)
    return 1;
  tr_system_free(sys);
  printf("hello from an installed troupe: %s\n", atomic_load(&echoed) ? "ok" : "FAILED");
  return atomic_load(&echoed) ? 0 : 1;
}
