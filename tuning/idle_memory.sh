#!/usr/bin/env bash
# uringcast idle memory: server RSS per idle connection, as the slope between two (or more)
# connection counts, so the fixed costs (binary, pools, first rings) cancel.
#
#   tuning/idle_memory.sh [--steps 100000,200000] [--proto mixed|sse|ws] [--rate 10000]
#                         [--hold 25s] [--heartbeat-interval 10s] [--src 127.0.0.2-127.0.0.17]
#                         [--server BIN] [--bench BIN] [--time-limit 180s]
#
# For each step N: a fresh `uringcast serve` sized for the largest step (the same flags every
# step, so fixed costs are the same and cancel in the slope); `uringcast-bench hold` opens N idle
# subscribers on one topic (`--proto mixed`: every other one SSE / WebSocket) at --rate/s from
# the --src addresses; once the server counts N streams it waits --hold (every connection then
# has had its heartbeats: SSE comments, WebSocket pings answered with pongs), reads the server's
# VmRSS, RssAnon and RssShmem (/proc/PID/status), the provided buffers its rings have grown to
# (`uringcast_recv_buffers_added_total`: 4 KiB of RSS each once used) and `recv_nobufs`, and
# stops both by PID. Prints one line per step and the slope (RSS(N2) - RSS(N1)) / (N2 - N1)
# between consecutive steps.
# Always stops by itself: each step is bounded by --time-limit; an EXIT trap kills what it
# started. Exit status: 0 all steps held N; 1 a step did not; 2 usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tuning/lib.sh
. "$ROOT/tuning/lib.sh"
STEPS="100000,200000"
PROTO=mixed
RATE=10000
HOLD_S=25
HB_S=10
SRC=127.0.0.2-127.0.0.17
SERVER="$ROOT/target/release/uringcast"
BENCH="$ROOT/target/release/uringcast-bench"
LIMIT_S=180

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
secs() { case "$1" in *s) echo "${1%s}" ;; *m) echo $((${1%m} * 60)) ;; *) echo "$1" ;; esac; }
while (($#)); do
    case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --proto) PROTO="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --hold) HOLD_S=$(secs "$2"); shift 2 ;;
    --heartbeat-interval) HB_S=$(secs "$2"); shift 2 ;;
    --src) SRC="$2"; shift 2 ;;
    --server) SERVER="$2"; shift 2 ;;
    --bench) BENCH="$2"; shift 2 ;;
    --time-limit) LIMIT_S=$(secs "$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "idle_memory.sh: unknown flag $1" >&2; usage ;;
    esac
done
[[ -x "$SERVER" && -x "$BENCH" ]] || { echo "idle_memory.sh: build first: cargo build --release -p uringcast -p uringcast-bench" >&2; exit 2; }
case "$PROTO" in mixed | sse | ws) ;; *) usage ;; esac

LOGS=$(mktemp -d /tmp/idle-memory.XXXXXX)
SERVER_PID=""
HOLD_PID=""
cleanup() {
    kill_pid "$HOLD_PID"
    kill_pid "$SERVER_PID"
}
trap cleanup EXIT

status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Provided buffers handed to the kernel (all rings, growth included): each is buf_bytes of
# RSS once used, so growth under load shows in the slope.
metric() {
    { curl -s --max-time 5 "http://$ADDR/metrics" || true; } | awk -v m="$1" '$1 == m {print $2 + 0; f = 1} END {if (!f) print 0}'
}
streams() {
    { curl -s --max-time 5 "http://$ADDR/metrics" || true; } |
        awk '/^uringcast_connections\{kind="(sse|websocket)"\}/ {s += $2} END {print s + 0}'
}

prev_n=0
prev_rss=0
failed=0
echo "step proto held rss_kib anon_kib shmem_kib base_rss_kib bytes_per_conn_total slope_bytes_per_conn recv_buffers recv_nobufs load"
IFS=, read -r -a steps <<<"$STEPS"
max_n=0
for n in "${steps[@]}"; do ((n > max_n)) && max_n=$n; done
for n in "${steps[@]}"; do
    t0=$(date +%s)
    RUST_LOG=warn "$SERVER" serve --listen 127.0.0.1:0 --connections-max "$((max_n + max_n / 8 + 1000))" \
        --heartbeat-interval "${HB_S}s" --pong-timeout 120s --request-timeout 120s \
        --idle-timeout 1h >"$LOGS/server-$n.out" 2>"$LOGS/server-$n.err" &
    SERVER_PID=$!
    ADDR=$(server_addr "$SERVER_PID" "$LOGS/server-$n.out" "$LOGS/server-$n.err") ||
        { echo "idle_memory.sh: server did not start" >&2; exit 1; }
    sleep 1
    base_rss=$(status_kb "$SERVER_PID" VmRSS)
    case "$PROTO" in
    sse) URLS=(--url "http://$ADDR/sse?topic=idle") ;;
    ws) URLS=(--url "ws://$ADDR/ws?topic=idle") ;;
    *) URLS=(--url "http://$ADDR/sse?topic=idle" --url "ws://$ADDR/ws?topic=idle") ;;
    esac
    run_s=$((n / RATE + HOLD_S + 30))
    "$BENCH" hold "${URLS[@]}" --conns "$n" --duration "${run_s}s" --rate "$RATE" --src "$SRC" \
        --heartbeat-max "$((3 * HB_S + 5))s" --connect-timeout 60s --max-time "$((run_s + 30))s" \
        --quiet >"$LOGS/hold-$n.txt" 2>&1 &
    HOLD_PID=$!
    held=0
    while :; do
        held=$(streams)
        ((held >= n)) && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        (($(date +%s) - t0 > LIMIT_S)) && break
        sleep 0.5
    done
    if ((held >= n)); then
        sleep "$HOLD_S"
        held=$(streams)
    fi
    rss=$(status_kb "$SERVER_PID" VmRSS)
    anon=$(status_kb "$SERVER_PID" RssAnon)
    shmem=$(status_kb "$SERVER_PID" RssShmem)
    load=$(cut -d' ' -f1 /proc/loadavg)
    bufs=$(metric uringcast_recv_buffers_added_total)
    nobufs=$(metric uringcast_recv_nobufs_total)
    kill_pid "$SERVER_PID"
    SERVER_PID=""
    kill_pid "$HOLD_PID"
    HOLD_PID=""
    per=$(((rss - base_rss) * 1024 / n))
    slope="-"
    ((prev_n > 0)) && slope=$(((rss - prev_rss) * 1024 / (n - prev_n)))
    echo "$n $PROTO $held $rss $anon $shmem $base_rss $per $slope $bufs $nobufs $load"
    ((held >= n)) || { failed=1; echo "idle_memory.sh: step $n held only $held (logs: $LOGS)" >&2; break; }
    prev_n=$n
    prev_rss=$rss
    # Let the kernel tear the sockets down before the next step.
    sleep 5
done
exit "$failed"
