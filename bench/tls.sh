#!/usr/bin/env bash
# bench/tls.sh: what TLS costs the server, plain against TLS on the same binary, runs
# alternating plain TLS plain TLS ... so that both share the machine's load.
#
#   fanout-ws, fanout-sse  server CPU (utime + stime from /proc/PID/stat over the whole harness
#                          run) per delivery
#   hold-ws, hold-sse      server RSS per idle connection: (VmRSS with N held - VmRSS before)/N
#   connect                handshakes/s the harness completed (HTTP upgrade included) and server
#                          CPU per connection
#
# Server on cpu 0 with one worker, harness on cpu 1 with one worker (as bench/ab.sh). The
# certificate is a throwaway P-256 one made with openssl in the work directory.
#
# usage: bench/tls.sh [--bin BIN] [--reps N] [--only fanout-ws,fanout-sse,hold-ws,hold-sse,connect]
#                     [--conns N] [--hold-conns N] [--connect-conns N] [--msg-rate P]
#                     [--duration D] [--out FILE]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/uringcast BENCH=$ROOT/target/release/uringcast-bench
REPS=3 ONLY="fanout-ws,fanout-sse,hold-ws,hold-sse,connect" CONNS=2000 HOLD=10000 CONNECT=5000
RATE=10 DUR=10s OUT=""
while (($#)); do
    case $1 in
    --bin) BIN=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --hold-conns) HOLD=$2; shift ;;
    --connect-conns) CONNECT=$2; shift ;;
    --msg-rate) RATE=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "tls.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -x $BIN ]] || { echo "tls.sh: no server at $BIN (cargo build --release)" >&2; exit 2; }
[[ -x $BENCH ]] || { echo "tls.sh: no harness at $BENCH (cargo build --release -p uringcast-bench)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "tls.sh: needs openssl to make a certificate" >&2; exit 2; }
WORK=$ROOT/target/tls-logs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
TSV=$WORK/runs.tsv
echo -e "rep\tscenario\tmode\tcount\tserver_cpu_ms\tus_per_item\tbytes_per_conn\tper_s\tloss" >"$TSV"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
hz=$(getconf CLK_TCK)

run() { # rep scenario mode(plain|tls)
    local rep=$1 sc=$2 mode=$3 port pid t0 t1 r0 r1=0 tls=() http=http ws=ws args base
    base=$WORK/$rep-$sc-$mode
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    if [[ $mode == tls ]]; then
        tls=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
        http=https ws=wss
    fi
    taskset -c 0 "$BIN" serve --listen "127.0.0.1:$port" --workers 1 --publish-open true \
        --heartbeat-interval 30s "${tls[@]}" >"$base.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    case $sc in
    fanout-ws) args=(fanout --url "$ws://127.0.0.1:$port/ws?topic={topic}") ;;
    fanout-sse) args=(fanout --url "$http://127.0.0.1:$port/sse?topic={topic}") ;;
    hold-ws) args=(hold --url "$ws://127.0.0.1:$port/ws?topic=h" --conns "$HOLD" --duration 8s) ;;
    hold-sse) args=(hold --url "$http://127.0.0.1:$port/sse?topic=h" --conns "$HOLD" --duration 8s) ;;
    connect) args=(connect --url "$ws://127.0.0.1:$port/ws?topic=c" --conns "$CONNECT") ;;
    esac
    if [[ $sc == fanout-* ]]; then
        args+=(--publish-url "$http://127.0.0.1:$port/publish?topic={topic}" --conns "$CONNS"
            --msg-rate "$RATE" --duration "$DUR" --drain 3s)
    fi
    [[ $mode == tls ]] && args+=(--tls-insecure)
    sleep 0.5
    r0=$(rss "$pid")
    t0=$(ticks "$pid")
    taskset -c 1 "$BENCH" "${args[@]}" --workers 1 --quiet --max-time 120s --json "$base.json" >"$base.txt" 2>&1 &
    local hb=$!
    if [[ $sc == hold-* ]]; then
        # RSS once every connection is established (and a second for the last handshakes'
        # allocations to settle), while the harness holds them.
        for _ in $(seq 300); do (($(established "$port") >= HOLD)) && break; sleep 0.1; done
        sleep 1
        r1=$(rss "$pid")
    fi
    wait "$hb" || true
    t1=$(ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$rep" "$sc" "$mode" "$t0" "$t1" "$hz" "$r0" "$r1" "$base.json" >>"$TSV" <<'PY'
import json, sys
rep, sc, mode, t0, t1, hz, r0, r1, f = sys.argv[1:]
j = json.load(open(f))
ms = (int(t1) - int(t0)) * 1000 / int(hz)
if sc.startswith("fanout"):
    count, per_s = j["deliveries"], j["deliveries_per_s"]
elif sc.startswith("hold"):
    count, per_s = j["connections_held"], 0
else:
    count, per_s = j["connections_opened"], j["connect_rate"]
loss = j["missing"] + j["duplicates"] + j["out_of_order"] + j["connect_failed"]
per_conn = (int(r1) - int(r0)) / max(1, count) if sc.startswith("hold") else 0
print(f"{rep}\t{sc}\t{mode}\t{count}\t{ms:.0f}\t{ms * 1000 / max(1, count):.3f}\t{per_conn:.0f}\t{per_s:.0f}\t{loss}")
PY
    tail -1 "$TSV"
}

for rep in $(seq "$REPS"); do
    for sc in ${ONLY//,/ }; do
        # Alternate which mode goes first, so neither always runs on a warmer (or busier) box.
        if ((rep % 2)); then run "$rep" "$sc" plain; run "$rep" "$sc" tls
        else run "$rep" "$sc" tls; run "$rep" "$sc" plain; fi
    done
done
python3 - "$TSV" <<'PY' | tee -a "$TSV.summary"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nscenario\tfigure\tplain median\tTLS median\tTLS/plain\truns\tloss")
for sc in dict.fromkeys(r["scenario"] for r in rows):
    figs = [("us_per_item", "server CPU us per item")]
    if sc.startswith("hold"):
        figs = [("bytes_per_conn", "server RSS bytes per held connection")]
    if sc == "connect":
        figs.append(("per_s", "connections/s (harness)"))
    loss = sum(int(r["loss"]) for r in rows if r["scenario"] == sc)
    for key, name in figs:
        p = [float(r[key]) for r in rows if r["scenario"] == sc and r["mode"] == "plain"]
        t = [float(r[key]) for r in rows if r["scenario"] == sc and r["mode"] == "tls"]
        mp, mt = statistics.median(p), statistics.median(t)
        print(f"{sc}\t{name}\t{mp:.3f}\t{mt:.3f}\t{mt / mp if mp else 0:.2f}\t{len(p)}+{len(t)}\t{loss}")
PY
[[ -n $OUT ]] && cat "$TSV" "$TSV.summary" >"$OUT"
echo "per-run logs: $WORK"
exit 0
