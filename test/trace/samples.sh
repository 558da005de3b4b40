#!/usr/bin/env bash
# The README's tracing commands, checked: trace the counter and pipeline
# samples through TROUPE_TRACE (with TROUPE_STATS on), then read each trace
# with troupe-trace (table, perfetto, svg). The JSON must parse and the SVG
# must be well-formed XML (python3, or xmllint for the SVG; skipped with a
# message when neither is installed). The table's counter row must show
# every increment.
#   test/trace/samples.sh BUILD_DIR
set -euo pipefail
build=$1
tool="$build/tools/trace/troupe-trace"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "trace samples: FAILED: $*" >&2; exit 1; }

TROUPE_TRACE="$tmp/counter.trace" TROUPE_STATS=20 "$build/samples/counter" -n 20000 \
  >"$tmp/counter.out" 2>"$tmp/counter.err" || fail "counter sample"
grep -q "troupe stats" "$tmp/counter.err" || fail "TROUPE_STATS printed nothing"
"$tool" table "$tmp/counter.trace" >"$tmp/counter.table" 2>"$tmp/table.err" || fail "table"
cat "$tmp/counter.table"
# 2 producer actors + 2 producer threads x 20000 increments, plus one GET.
awk '$2 == "counter" {print $3}' "$tmp/counter.table" | grep -qx 80001 ||
  fail "the counter's row does not show 80001 messages"
! grep -E "truncated|no end record|corrupt|unknown" "$tmp/table.err" || fail "a damaged trace"
"$tool" perfetto "$tmp/counter.trace" "$tmp/counter.json" || fail "perfetto"
"$tool" svg "$tmp/counter.trace" "$tmp/counter.svg" --top 4 || fail "svg"

TROUPE_TRACE="$tmp/pipeline.trace" "$build/samples/pipeline" -m stages -n 20k -b 16 \
  >"$tmp/pipeline.out" || fail "pipeline sample"
"$tool" table "$tmp/pipeline.trace" >"$tmp/pipeline.table" || fail "pipeline table"
awk '$2 == "sink" {n += $3} END {exit n != 20001}' "$tmp/pipeline.table" ||
  fail "the sink rows do not add up to 20000 items + REPORT"
"$tool" perfetto "$tmp/pipeline.trace" "$tmp/pipeline.json" || fail "pipeline perfetto"
"$tool" svg "$tmp/pipeline.trace" "$tmp/pipeline.svg" || fail "pipeline svg"

if command -v python3 >/dev/null; then
  for j in counter pipeline; do
    python3 - "$tmp/$j.json" "$tmp/$j.svg" <<'PY' || fail "$j: JSON or SVG"
import json, sys, xml.etree.ElementTree as ET
ev = json.load(open(sys.argv[1]))["traceEvents"]
workers = {e["tid"] for e in ev if e.get("name") == "thread_name" and e["args"]["name"].startswith("worker")}
assert workers and all(e["tid"] in workers for e in ev if e.get("cat") == "run"), "tracks"
assert any(e["ph"] == "C" for e in ev), "counter tracks"
ET.parse(sys.argv[2])
PY
  done
elif command -v xmllint >/dev/null; then
  echo "trace samples: python3 not found: JSON not parsed; SVG checked with xmllint"
  xmllint --noout "$tmp/counter.svg" "$tmp/pipeline.svg" || fail "SVG"
else
  echo "trace samples: neither python3 nor xmllint found: outputs not parsed (tools/install-deps.sh installs python3)"
fi
echo "trace samples: OK"
