#!/usr/bin/env bash
# test/samples/bank_kill.sh BANK - the bank sample (samples/bank.c) keeps
# money conserved through kill -9, injected faults and torn journal tails,
# and refuses damaged history.
#
#   1. kill -9 a long run at a random moment (once per flush policy, at 1, 2
#      and 4 worker threads), then `bank --verify`: it must finish the
#      transfers left in flight and print "money conserved: yes";
#   2. a normal short run on the same directory continues the history;
#   3. --fail-rate 0.05: the supervisor restarts accounts (restarts > 0) and
#      money is conserved;
#   4. a teller journal cut by a few bytes (what a crash can leave): the torn
#      tail is reported, its transfer finished again, money conserved;
#   5. an account journal cut by a few bytes after its teller recorded the
#      transfer done (what no crash can leave): the check says NO, exit 1;
#   6. a damaged byte in the middle of an account journal: the account
#      refuses to start, with a clear message, exit 1.
# Every run's output is shown, indented, so that sanitizer reports in it
# fail the ctest run (FAIL_REGULAR_EXPRESSION).
set -euo pipefail

bank="${1:?usage: bank_kill.sh path/to/bank}"
dir="$(mktemp -d "${TMPDIR:-/tmp}/troupe-bank-test.XXXXXX")"
bg=""
cleanup() {
  if [ -n "$bg" ]; then kill -9 "$bg" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "bank_kill: FAILED: $*" >&2
  exit 1
}

# run ARGS...: run the bank, show its output, keep it in $out and its exit
# status in $rc.
run() {
  echo "\$ bank $*"
  rc=0
  out="$("$bank" "$@" 2>&1)" || rc=$?
  printf '%s\n' "$out" | sed 's/^/  | /'
  echo "  (exit $rc)"
}

has() { grep -q -- "$1" <<<"$out"; }

conserved() {
  [ "$rc" -eq 0 ] || fail "$1: exit status $rc"
  has '^money conserved: yes' || fail "$1: money not conserved"
}

# ------------------------------------------------------------ 1. kill -9
round=0
for flush in batch event none; do
  round=$((round + 1))
  threads=$((1 << (round - 1)))
  d="$dir/kill-$flush"
  echo "== kill -9 during a run (--flush $flush, $threads threads)"
  "$bank" --dir "$d" -n 100M --fail-rate 0.02 --flush "$flush" --seed "$round" \
    --threads "$threads" >"$dir/bg.log" 2>&1 &
  bg=$!
  # Kill it once transfers are under way (the tellers' journals exist),
  # at a moment that differs from round to round.
  for _ in $(seq 100); do
    [ -s "$d/teller-0.tj" ] && break
    sleep 0.1
  done
  sleep "0.$((RANDOM % 10))"
  kill -0 "$bg" 2>/dev/null || { cat "$dir/bg.log"; fail "the run ended before the kill"; }
  kill -9 "$bg"
  st=0
  { wait "$bg"; } 2>/dev/null || st=$? # no "Killed" job notice
  bg=""
  [ "$st" -eq 137 ] || fail "the killed run's status is $st, not 137 (SIGKILL)"
  run --dir "$d" --verify
  conserved "--verify after kill -9 (--flush $flush)"
  # A second verify finds nothing left in flight.
  run --dir "$d" --verify
  conserved "second --verify"
  has ' 0 of them left in flight' || fail "the second --verify found transfers in flight"
done

# ------------------------------------------------------ 2. it continues
echo "== a normal run on the killed directory continues its history"
run --dir "$dir/kill-batch" -n 500 --fail-rate 0.02
conserved "continuing run"
has 'continuing: replayed from the journals' || fail "the run did not replay the old journals"
has '^transfers: [0-9]* done' || fail "no transfer count"
done_now="$(sed -n 's/^transfers: \([0-9]*\) done, \([0-9]*\) aborted.*/\1 \2/p' <<<"$out")"
read -r d_now a_now <<<"$done_now"
[ $((d_now + a_now)) -eq 500 ] || fail "the run made $((d_now + a_now)) transfers, not 500"

# ----------------------------------------------------- 3. injected faults
echo "== injected faults: accounts fail and are restarted"
run --dir "$dir/faults" --fresh -n 1000 --fail-rate 0.05
conserved "--fail-rate 0.05"
restarts="$(sed -n 's/.*restarts: \([0-9]*\) (supervisor).*/\1/p' <<<"$out")"
if [ -z "$restarts" ] || [ "$restarts" -eq 0 ]; then
  fail "no restarts reported ('$restarts')"
fi
faults="$(sed -n 's/^failures injected: \([0-9]*\),.*/\1/p' <<<"$out")"
[ "$faults" -gt 0 ] || fail "no faults injected"

# ------------------------------------------------- 4. torn teller journal
echo "== a torn tail on a teller journal is dropped and its transfer finished"
cp -R "$dir/faults" "$dir/torn-teller"
truncate -s -3 "$dir/torn-teller/teller-0.tj"
run --dir "$dir/torn-teller" --verify
conserved "--verify of a torn teller journal"
has 'teller-0: dropped a torn tail' || fail "the torn tail was not reported"
has ' 1 of them left in flight' || fail "the cut transfer was not finished again"

# ----------------------------------- 5. an account journal cut after "done"
echo "== an account journal cut after its teller recorded the transfer: the check says NO"
cp -R "$dir/faults" "$dir/torn-account"
truncate -s -3 "$dir/torn-account/account-0.tj"
run --dir "$dir/torn-account" --verify
[ "$rc" -eq 1 ] || fail "exit status $rc, not 1"
has 'account-0: dropped a torn tail' || fail "the torn tail was not reported"
has '^money conserved: NO' || fail "the lost event was not caught"

# --------------------------------------------- 6. damage in the middle
echo "== a damaged byte in the middle of an account journal: refused"
cp -R "$dir/faults" "$dir/corrupt"
# Byte 26: inside the first record (16 + 8 + the "opened" event's 5 bytes).
printf '\377' | dd of="$dir/corrupt/account-1.tj" bs=1 seek=26 conv=notrunc status=none
run --dir "$dir/corrupt" --verify
[ "$rc" -eq 1 ] || fail "exit status $rc, not 1"
has 'account-1: journal .* is damaged at byte 16' || fail "no clear message about the damage"
has 'money conserved: yes' && fail "a damaged journal passed the check"

echo "bank_kill: OK"
