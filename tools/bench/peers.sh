#!/bin/sh
# peers.sh - run troupe side by side with its peer runtimes and print a table.
#
#   tools/bench/peers.sh [--runs N] [--threads "1 2"] [--peers "caf erlang go"]
#                        [--workloads "counting pingpong ..."] [--out FILE]
#                        [--set WORKLOAD:key=value]... [--timeout SECONDS]
#
# The peers are the implementations of shared/bench/WORKLOADS.md in
# shared/peers/ (CAF 0.17 from Debian's libcaf-dev, Erlang/OTP 25 from
# erlang-base, Go 1.19 from golang-go). Their folder is found at
# $PEERS_DIR, else at ../shared/peers beside the repository (the
# repository's parent holds shared/). It is read-only, so it is copied
# (timestamps kept, so that the peers' own builds are reused) into
# build/peers, which .gitignore ignores.
#
# For each thread count and each workload, troupe and each peer run in turn,
# N times (A B C D A B C D ...), so that slow drifts of a shared machine hit
# every runtime alike. Every run is one process; its JSON line is appended to
# the --out file (default build/peers-results.jsonl) with "runtime",
# "session", "round" and "rc" added. A run that exits non-zero, prints no
# JSON line, reports "ok":false or runs past --timeout (default 300 s) is
# recorded as a failure and shown as FAIL in the table: medians are taken
# over the successful runs only, and the table says how many failed.
#
# Defaults: --runs 3, --threads "$(nproc)", every installed peer, every
# workload at its WORKLOADS.md default size. On the 2-core development
# machine one thread count at the defaults takes about 5 minutes (see
# BENCHMARKS.md). --set overrides one size of one workload for every
# runtime, e.g. --set spawn:a=200000 --set ring:h=2000000.
#
# Missing peer toolchains are installed with apt-get when running as root or
# with sudo (libcaf-dev cmake g++ / erlang-base / golang-go); a peer whose
# toolchain cannot be installed, or whose build fails, is skipped with a
# message on stderr. Requires python3 for the table.
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=3
THREADS=$(getconf _NPROCESSORS_ONLN)
PEERS="caf erlang go"
WORKLOADS="counting pingpong ring fjthrput spawn bank bndbuffer"
OUT=$REPO/build/peers-results.jsonl
TIMEOUT=300
SETS=""

die() { echo "peers.sh: $*" >&2; exit 2; }
msg() { echo "peers.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --threads) THREADS=${2:?}; shift 2 ;;
        --peers) PEERS=${2?}; shift 2 ;;
        --workloads) WORKLOADS=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --set) SETS="$SETS ${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) die "--runs must be a positive integer" ;; esac
for t in $THREADS; do
    case "$t" in ''|*[!0-9]*|0) die "--threads: bad thread count '$t'" ;; esac
done
for w in $WORKLOADS; do
    case " counting pingpong ring fjthrput spawn bank bndbuffer " in
        *" $w "*) ;;
        *) die "unknown workload: $w" ;;
    esac
done
for s in $SETS; do
    case "$s" in *:*=*) ;; *) die "--set takes WORKLOAD:key=value, not '$s'" ;; esac
done
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the table"
case "$OUT" in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
mkdir -p "$(dirname "$OUT")"

# ---- peer toolchains ------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
fi

have_peer() {
    case "$1" in
        caf) [ -f /usr/include/caf/all.hpp ] && command -v cmake >/dev/null 2>&1 &&
                 command -v g++ >/dev/null 2>&1 ;;
        erlang) command -v erl >/dev/null 2>&1 && command -v erlc >/dev/null 2>&1 ;;
        go) command -v go >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}
peer_pkgs() {
    case "$1" in
        caf) echo "libcaf-dev cmake g++" ;;
        erlang) echo "erlang-base" ;;
        go) echo "golang-go" ;;
    esac
}
peer_name() {
    case "$1" in troupe) echo troupe ;; caf) echo "CAF 0.17" ;; erlang) echo "Erlang/OTP" ;; go) echo Go ;; *) echo "$1" ;; esac
}

APT_UPDATED=no
install_peer() {
    pkgs=$(peer_pkgs "$1")
    if [ "$SUDO" = none ]; then
        msg "skipping $1: its toolchain ($pkgs) is missing and neither root nor password-less sudo is available"
        return 1
    fi
    msg "installing $pkgs for $1 ..."
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $pkgs >"$REPO/build/peers-apt-$1.log" 2>&1; then
        if [ "$APT_UPDATED" = no ]; then
            APT_UPDATED=yes
            $SUDO apt-get update -q >>"$REPO/build/peers-apt-$1.log" 2>&1 || true
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $pkgs >>"$REPO/build/peers-apt-$1.log" 2>&1 || true
        fi
    fi
    if have_peer "$1"; then return 0; fi
    msg "skipping $1: apt-get install $pkgs failed:"
    tail -n 5 "$REPO/build/peers-apt-$1.log" | sed 's/^/    /' >&2
    return 1
}

mkdir -p "$REPO/build"
ACTIVE=""
for p in $PEERS; do
    case "$p" in caf|erlang|go) ;; *) die "unknown peer: $p (caf erlang go)" ;; esac
    if have_peer "$p" || install_peer "$p"; then ACTIVE="$ACTIVE $p"; fi
done

# ---- peer sources -------------------------------------------------------
if [ -n "$ACTIVE" ]; then
    SRC=${PEERS_DIR:-$REPO/../shared/peers}
    [ -d "$SRC" ] || die "peer sources not found at $SRC (set PEERS_DIR)"
    mkdir -p "$REPO/build/peers"
    # -p keeps the timestamps, so the peers' builds in build/peers are reused.
    cp -Rp "$SRC/." "$REPO/build/peers/"
    chmod -R u+w "$REPO/build/peers"
fi
PEERS_BUILD=$REPO/build/peers

# Build each peer once (outside of any measurement) with a tiny run.
BUILT=""
for p in $ACTIVE; do
    msg "building $p ..."
    if "$PEERS_BUILD/$p/run.sh" counting 1 n=1000 >"$REPO/build/peers-build-$p.log" 2>&1; then
        BUILT="$BUILT $p"
    else
        msg "skipping $p: its build or a trial run (run.sh counting 1 n=1000) failed:"
        tail -n 15 "$REPO/build/peers-build-$p.log" | sed 's/^/    /' >&2
    fi
done
ACTIVE=$BUILT

# ---- troupe ---------------------------------------------------------------
TROUPE=$REPO/build/tools/bench/troupe-bench
if [ ! -f "$REPO/build/CMakeCache.txt" ]; then
    cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=Release >&2 || die "cmake failed"
fi
make -C "$REPO/build" -j"$(getconf _NPROCESSORS_ONLN)" troupe-bench >"$REPO/build/peers-build-troupe.log" 2>&1 ||
    { tail -n 20 "$REPO/build/peers-build-troupe.log" >&2; die "building troupe-bench failed"; }
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$REPO/build/CMakeCache.txt")

# ---- runs -----------------------------------------------------------------
SESSION=$(date -u +%Y%m%dT%H%M%SZ)-$$
RUNTIMES="troupe$ACTIVE"
msg "session $SESSION: runtimes: $RUNTIMES; threads: $THREADS; runs: $RUNS; troupe build: $BUILD_TYPE"
msg "results appended to $OUT"
START=$(date +%s)

sizes_for() { # the --set overrides of workload $1, as key=value words
    for s in $SETS; do
        case "$s" in "$1":*) printf '%s ' "${s#*:}" ;; esac
    done
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

# record RUNTIME WORKLOAD THREADS ROUND RC: one JSON line from $TMP/out/err
record() {
    python3 - "$@" "$SESSION" "$TMP/out" "$TMP/err" >>"$OUT" <<'EOF'
import json, sys
rt, w, t, rnd, rc, session, outp, errp = sys.argv[1:]
rec = None
for line in open(outp, errors="replace"):
    line = line.strip()
    if line.startswith("{"):
        try:
            rec = json.loads(line)
        except ValueError:
            pass
rc = int(rc)
if rec is None:
    rec = {"workload": w, "threads": int(t), "ok": False}
    err = open(errp, errors="replace").read().strip().splitlines()
    err = [l.strip() for l in err if l.strip()]
    err = err if len(err) <= 2 else [err[0], "...", err[-1]]
    rec["error"] = (" | ".join(err) or "no JSON line")[:400]
if rc != 0:
    rec["ok"] = False
    if rc == 124:
        rec["error"] = rec.get("error", "") + " timed out"
rec.update({"runtime": rt, "session": session, "round": int(rnd), "rc": rc})
print(json.dumps(rec, separators=(",", ":")))
EOF
}

run_one() { # RUNTIME WORKLOAD THREADS -> rc; output in $TMP/out, $TMP/err
    rt=$1; w=$2; t=$3
    # shellcheck disable=SC2046
    if [ "$rt" = troupe ]; then
        set -- "$TROUPE" "$w" "$t" $(sizes_for "$w")
    else
        set -- "$PEERS_BUILD/$rt/run.sh" "$w" "$t" $(sizes_for "$w")
    fi
    rc=0
    timeout -k 10 "$TIMEOUT" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null || rc=$?
    return $rc
}

for t in $THREADS; do
    for w in $WORKLOADS; do
        r=1
        while [ "$r" -le "$RUNS" ]; do
            for rt in $RUNTIMES; do
                rc=0
                run_one "$rt" "$w" "$t" || rc=$?
                record "$rt" "$w" "$t" "$r" "$rc"
                line=$(tail -n 1 "$OUT")
                printf '  T=%s %-9s %-6s #%s: %s\n' "$t" "$w" "$rt" "$r" \
                    "$(printf '%s' "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(("ok   %.3f s  %.4g %s  rss %s kB" % (d.get("seconds",0), d.get("rate",0), d.get("unit",""), d.get("rss_kb","?"))) if d.get("ok") else ("FAIL rc=%s %s" % (d["rc"], d.get("error",""))))')" >&2
            done
            r=$((r + 1))
        done
    done
done
END=$(date +%s)

# ---- table ------------------------------------------------------------------
python3 - "$OUT" "$SESSION" "$RUNTIMES" "$RUNS" "$((END - START))" "$BUILD_TYPE" "$SETS" <<'EOF'
import json, statistics, sys
path, session, runtimes, runs, elapsed, build, sets = sys.argv[1:]
runtimes = runtimes.split()
peers = runtimes[1:]
names = {"troupe": "troupe", "caf": "CAF 0.17", "erlang": "Erlang", "go": "Go"}
recs = []
for line in open(path):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("session") == session:
        recs.append(d)

def si(x):
    for f, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= f:
            return "%.3g %s" % (x / f, s)
    return "%.3g" % x

def mb(kb):
    return "%.0f MB" % (kb / 1024) if kb >= 10240 else "%.1f MB" % (kb / 1024)

order = []
for d in recs:
    key = (d["threads"], d["workload"])
    if key not in order:
        order.append(key)
print("Session %s: %s runs each, alternating %s; troupe build %s; %s s in all."
      % (session, runs, " ".join(runtimes), build, elapsed))
if sets.strip():
    print("Size overrides: %s" % sets.strip())
for t in sorted({k[0] for k in order}):
    print()
    print("### T = %d" % t)
    print()
    hdr = ["workload", "unit", "troupe median"] + ["%s median" % names[p] for p in peers]
    hdr += ["troupe/%s" % names[p] for p in peers]
    hdr += ["troupe RSS"] + ["%s RSS" % names[p] for p in peers]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|")
    for (tt, w) in order:
        if tt != t:
            continue
        med, rss, cell = {}, {}, {}
        unit = ""
        for rt in runtimes:
            rs = [d for d in recs if d["threads"] == t and d["workload"] == w and d["runtime"] == rt]
            good = [d for d in rs if d.get("ok") is True and d.get("rc") == 0]
            bad = len(rs) - len(good)
            if good:
                med[rt] = statistics.median(d["rate"] for d in good)
                rss[rt] = statistics.median(d.get("rss_kb", 0) for d in good)
                unit = unit or good[0].get("unit", "")
                c = si(med[rt])
                if w == "spawn":
                    bpa = [d["bytes_per_actor"] for d in good if "bytes_per_actor" in d]
                    if bpa:
                        c += " (%.0f B/actor)" % statistics.median(bpa)
                if bad:
                    c += " (%d/%d FAIL)" % (bad, len(rs))
                cell[rt] = c
            else:
                cell[rt] = "FAIL (%d/%d)" % (bad, len(rs)) if rs else "—"
        row = [w, unit] + [cell[rt] for rt in runtimes]
        for p in peers:
            row.append("%.2f×" % (med["troupe"] / med[p]) if "troupe" in med and med.get(p) else "—")
        for rt in runtimes:
            row.append(mb(rss[rt]) if rt in rss else "—")
        print("| " + " | ".join(row) + " |")
fails = [d for d in recs if not (d.get("ok") is True and d.get("rc") == 0)]
if fails:
    print()
    print("Failed runs:")
    for d in fails:
        print("- T=%s %s %s round %s: rc=%s %s" % (d["threads"], d["workload"], d["runtime"],
              d["round"], d["rc"], d.get("error", "ok=false")))
EOF
