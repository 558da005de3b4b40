#!/usr/bin/env bash
# What tracing costs (BENCHMARKS.md, "Tracing overhead"): troupe-bench built
# twice as Release, with the per-actor counters compiled in (the default) and
# out (-DTROUPE_COUNTERS=OFF), run in alternation: counters out, counters in
# (trace off), counters in with the event trace on (TROUPE_TRACE). Prints
# each configuration's median rate and its ratio to "counters out".
#
#   tools/bench/overhead.sh [--runs N] [--workloads "counting pingpong"] [--threads T]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
runs=7
workloads="counting"
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
  --runs) runs=$2; shift 2 ;;
  --workloads) workloads=$2; shift 2 ;;
  --threads) threads=$2; shift 2 ;;
  *) echo "usage: $0 [--runs N] [--workloads \"W ...\"] [--threads T]" >&2; exit 2 ;;
  esac
done

build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DTROUPE_BUILD_TESTS=OFF \
    -DTROUPE_BUILD_SAMPLES=OFF "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" --target troupe-bench >/dev/null
}
on="$root/build-overhead/on"
off="$root/build-overhead/off"
build "$on" -DTROUPE_COUNTERS=ON
build "$off" -DTROUPE_COUNTERS=OFF
trace="$(mktemp -d)/overhead.trace"
results="$root/build-overhead/results.txt"
: >"$results"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"

rate() { sed -n 's/.*"rate":\([0-9.]*\).*"ok":true.*/\1/p'; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

for w in $workloads; do
  for i in $(seq "$runs"); do
    echo "$w off $("$off/tools/bench/troupe-bench" "$w" "$threads" | rate)" >>"$results"
    echo "$w on $("$on/tools/bench/troupe-bench" "$w" "$threads" | rate)" >>"$results"
    echo "$w trace $(TROUPE_TRACE="$trace" "$on/tools/bench/troupe-bench" "$w" "$threads" | rate)" \
      >>"$results"
  done
  # The last traced run's file, to show what a trace of this workload holds.
  [ "$w" = "$(echo "$workloads" | awk '{print $NF}')" ] && ls -l "$trace" | awk '{print "trace file: " $5 " bytes"}'
  m_off=$(awk -v w="$w" '$1 == w && $2 == "off" {print $3}' "$results" | median)
  m_on=$(awk -v w="$w" '$1 == w && $2 == "on" {print $3}' "$results" | median)
  m_tr=$(awk -v w="$w" '$1 == w && $2 == "trace" {print $3}' "$results" | median)
  awk -v w="$w" -v a="$m_off" -v b="$m_on" -v c="$m_tr" -v n="$runs" -v t="$threads" 'BEGIN {
    printf "%s (median of %d runs, %d threads): counters out %.0f/s | counters in %.0f/s (%+.1f%%) | trace on %.0f/s (%+.1f%% vs out, %+.1f%% vs in)\n",
      w, n, t, a, b, (b / a - 1) * 100, c, (c / a - 1) * 100, (c / b - 1) * 100 }'
  # Runs next to each other share the machine's load: the median of the
  # per-round ratios is steadier than the ratio of the medians.
  r_on=$(awk -v w="$w" '$1 == w {v[$2] = $3} $1 == w && $2 == "trace" {print v["on"] / v["off"]}' "$results" | median)
  r_tr=$(awk -v w="$w" '$1 == w {v[$2] = $3} $1 == w && $2 == "trace" {print v["trace"] / v["off"]}' "$results" | median)
  awk -v w="$w" -v a="$r_on" -v b="$r_tr" 'BEGIN {
    printf "%s, median of per-round ratios to counters out: counters in %+.1f%%, trace on %+.1f%%\n",
      w, (a - 1) * 100, (b - 1) * 100 }'
done
echo "every run: $results"
rm -f "$trace"
