#!/usr/bin/env bash
# Build the libFuzzer targets (test/fuzz/) with clang in build-fuzz/ and run
# each for a while.
#   tools/fuzz.sh [seconds-per-target] [target...]
# seconds default to 30 (what CI runs); targets default to every
# test/fuzz/fuzz_<name>.c, named <name> or fuzz_<name> (e.g. `mp`, `msg`).
# Each target fuzzes a scratch copy of test/fuzz/corpus/<name>/ (the
# committed corpus is never written). Crash, leak, timeout and OOM inputs are
# kept in build-fuzz/fuzz-artifacts/<target>/, and the run's log in
# build-fuzz/fuzz-logs/<target>.log. Exits non-zero when any target fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"

secs="${1:-30}"
[ $# -gt 0 ] && shift
case "$secs" in
'' | *[!0-9]* | 0)
  echo "usage: tools/fuzz.sh [seconds-per-target] [target...]" >&2
  exit 2
  ;;
esac

# ------------------------------------------------------------- dependencies
# libFuzzer and the sanitizer runtimes for Debian 12's clang 14.
"$root/tools/install-deps.sh" clang libclang-rt-14-dev

# ------------------------------------------------------------------ targets
if [ $# -eq 0 ]; then
  for src in "$root"/test/fuzz/fuzz_*.c; do
    name="$(basename "$src" .c)"
    set -- "$@" "${name#fuzz_}"
  done
fi
targets=()
for t in "$@"; do
  t="${t#fuzz_}"
  [ -f "$root/test/fuzz/fuzz_$t.c" ] || { echo "fuzz: no test/fuzz/fuzz_$t.c" >&2; exit 2; }
  [ -d "$root/test/fuzz/corpus/$t" ] || { echo "fuzz: no test/fuzz/corpus/$t/" >&2; exit 2; }
  targets+=("$t")
done

# ------------------------------------------------------------------- build
echo "== fuzz build ($build)"
mkdir -p "$build"
exes=()
for t in "${targets[@]}"; do exes+=("fuzz_$t"); done
if ! { CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTROUPE_FUZZ=ON -DTROUPE_SANITIZE=address -DTROUPE_WERROR=ON &&
  cmake --build "$build" -j "$(nproc)" --target "${exes[@]}"; } >"$build/fuzz-build.log" 2>&1; then
  tail -n 40 "$build/fuzz-build.log" >&2
  echo "fuzz: build failed (log: $build/fuzz-build.log); the top-level CMakeLists.txt must" \
    "add test/fuzz when TROUPE_FUZZ is ON" >&2
  exit 1
fi

# --------------------------------------------------------------------- run
scratch="$(mktemp -d "${TMPDIR:-/tmp}/troupe-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/fuzz-logs"
passed=0
failed=0
for t in "${targets[@]}"; do
  exe="fuzz_$t"
  log="$build/fuzz-logs/$exe.log"
  artifacts="$build/fuzz-artifacts/$exe"
  mkdir -p "$scratch/$t" "$artifacts"
  cp -R "$root/test/fuzz/corpus/$t/." "$scratch/$t/"
  echo "== $exe for ${secs}s (log: $log)"
  # One process at a time; -timeout catches a hang (e.g. a lost message),
  # -malloc_limit_mb an allocation sized from untrusted bytes.
  rc=0
  "$build/fuzz/$exe" -max_len=4096 -max_total_time="$secs" -timeout=10 -malloc_limit_mb=64 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$scratch/$t" >"$log" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  # A crash skips the final stats: take the last progress line's count.
  [ -n "$execs" ] || execs="$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz: $exe ok: ${execs:-?} execs (${rate:-?} exec/s)"
    # Notes the target prints itself, as "fuzz_<name>: ...".
    grep -h "^$exe: " "$log" | sed 's/^/fuzz: /' || true
  else
    failed=$((failed + 1))
    echo "fuzz: $exe FAILED (exit $rc) after ${execs:-?} execs; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/  | /'
    grep -h "Test unit written to" "$log" | sed 's/^/fuzz: artifact: /' || true
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
