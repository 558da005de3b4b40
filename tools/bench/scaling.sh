#!/bin/sh
# scaling.sh - troupe and the Go peer side by side at several thread counts,
# for a machine that cannot install the peers' toolchains (a bare, lent
# machine): build both as static binaries here, carry them there, run this.
#
#   gcc -O2 -std=gnu17 -DCK_MD_CACHELINE=32 -I actor/include tools/bench/bench.c \
#       build/actor/libtroupe.a /usr/lib/x86_64-linux-gnu/libmsgpackc.a \
#       -static -pthread -lm -o DIR/troupe-bench
#   (cd ../shared/peers/go && CGO_ENABLED=0 go build -o DIR/go_bench .)
#   tools/bench/scaling.sh DIR [OUT.jsonl] [THREADS...]
#
# Two rounds; in each, for every thread count and workload, troupe then Go.
# One JSON line per run: {"runtime":..., "round":..., "r":<the run's line>}.
# Each run is cut off after 30 s (recorded as an empty "r").
set -u
dir=${1:?usage: scaling.sh DIR [OUT.jsonl] [THREADS...]}
out=${2:-scaling.jsonl}
shift 2 2>/dev/null || shift $#
threads=${*:-1 2 4 8 16}
for round in 1 2; do
  for t in $threads; do
    for w in counting pingpong ring fjthrput spawn bank bndbuffer; do
      for rt in troupe go; do
        bin="$dir/troupe-bench"
        [ "$rt" = go ] && bin="$dir/go_bench"
        r=$(timeout 30 "$bin" "$w" "$t" | tail -1)
        echo "{\"runtime\":\"$rt\",\"round\":$round,\"r\":${r:-null}}" >>"$out"
      done
    done
  done
done
