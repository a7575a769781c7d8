#!/usr/bin/env bash
# bench/ab.sh: server CPU per delivery (or per echo) of two uringcast builds, A and B, on the
# same scenario, runs alternating A B A B ... so that both share the machine's load.
#
# Server CPU is utime + stime of the server process from /proc/PID/stat over the whole harness
# run (connection set-up included, the same for A and B), divided by what the harness counted.
# Server on cpu 0 with one worker, harness on cpu 1 with one worker, as in compare.sh.
#
# usage: bench/ab.sh --a BIN --b BIN [--reps N] [--only fanout-ws,fanout-sse,echo]
#                    [--conns N] [--msg-rate P] [--duration D] [--out FILE]
# Prints one TSV line per run and a summary (median per scenario and build, and B/A).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
A="" B="" REPS=3 ONLY="fanout-ws,fanout-sse,echo" CONNS=10000 RATE=10 DUR=10s OUT=""
BENCH=$ROOT/target/release/uringcast-bench
while (($#)); do
    case $1 in
    --a) A=$2; shift ;;
    --b) B=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --msg-rate) RATE=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -x $A && -x $B ]] || { echo "ab.sh: --a and --b must name uringcast binaries" >&2; exit 2; }
[[ -x $BENCH ]] || { echo "ab.sh: no harness at $BENCH (cargo build --release -p uringcast-bench)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
TSV=$WORK/runs.tsv
echo -e "rep\tscenario\tbuild\tcount\tserver_cpu_ms\tus_per_item\tp99_ms\tloss" >"$TSV"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # rep scenario label binary
    local rep=$1 sc=$2 label=$3 bin=$4 port pid t0 t1 url args
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Both builds publish without a key on loopback: newer ones need the switch that says so.
    local open=()
    "$bin" serve --help 2>/dev/null | grep -q -- --publish-open && open=(--publish-open true)
    taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" --workers 1 --echo-path /echo "${open[@]}" \
        >"$WORK/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    case $sc in
    fanout-ws) args=(fanout --url "ws://127.0.0.1:$port/ws?topic={topic}") ;;
    fanout-sse) args=(fanout --url "http://127.0.0.1:$port/sse?topic={topic}") ;;
    echo) args=(echo --url "ws://127.0.0.1:$port/echo" --conns 1000 --inflight 16 --size 32 --duration "$DUR") ;;
    esac
    if [[ $sc == fanout-* ]]; then
        args+=(--publish-url "http://127.0.0.1:$port/publish?topic={topic}" --conns "$CONNS"
            --msg-rate "$RATE" --duration "$DUR" --drain 3s)
    fi
    t0=$(ticks "$pid")
    taskset -c 1 "$BENCH" "${args[@]}" --workers 1 --quiet --max-time 120s --json "$WORK/run.json" >/dev/null 2>&1 || true
    t1=$(ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$rep" "$sc" "$label" "$t0" "$t1" "$hz" "$WORK/run.json" >>"$TSV" <<'PY'
import json, sys
rep, sc, label, t0, t1, hz, f = sys.argv[1:]
j = json.load(open(f))
count = j["echoes"] if sc == "echo" else j["deliveries"]
ms = (int(t1) - int(t0)) * 1000 / int(hz)
loss = j["missing"] + j["duplicates"] + j["out_of_order"]
p99 = j["latency_us"]["p99"] / 1000
print(f"{rep}\t{sc}\t{label}\t{count}\t{ms:.0f}\t{ms * 1000 / max(1, count):.3f}\t{p99:.1f}\t{loss}")
PY
    tail -1 "$TSV"
}

for rep in $(seq "$REPS"); do
    for sc in ${ONLY//,/ }; do
        # Alternate which build goes first, so neither always runs on a warmer (or busier) box.
        if ((rep % 2)); then run "$rep" "$sc" A "$A"; run "$rep" "$sc" B "$B"
        else run "$rep" "$sc" B "$B"; run "$rep" "$sc" A "$A"; fi
    done
done
python3 - "$TSV" <<'PY' | tee -a "$TSV.summary"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nscenario\tA median us/item\tB median us/item\tB/A\truns\tloss")
for sc in dict.fromkeys(r["scenario"] for r in rows):
    a = [float(r["us_per_item"]) for r in rows if r["scenario"] == sc and r["build"] == "A"]
    b = [float(r["us_per_item"]) for r in rows if r["scenario"] == sc and r["build"] == "B"]
    loss = sum(int(r["loss"]) for r in rows if r["scenario"] == sc)
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{sc}\t{ma:.3f}\t{mb:.3f}\t{mb / ma:.3f}\t{len(a)}+{len(b)}\t{loss}")
PY
[[ -n $OUT ]] && cat "$TSV" "$TSV.summary" >"$OUT"
exit 0
