#!/usr/bin/env bash
# One command for a new user: install dependencies, build, run the samples.
#   tools/samples.sh [build-dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "== counter: producer actors and threads increment one counter actor"
"$build/samples/counter" -n 1000000
echo
echo "== pipeline: a bounded buffer, then a 4-stage pipeline with back-pressure (10x slower sink)"
"$build/samples/pipeline" -n 500k -s 10
echo
echo "== bank: event-sourced accounts under a supervisor, with injected failures"
bankdir="$(mktemp -d)"
"$build/samples/bank" --dir "$bankdir" --fresh
rm -rf "$bankdir"
