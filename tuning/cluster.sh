#!/usr/bin/env bash
# uringcast cluster run: one redis-server, three `uringcast serve` nodes sharing it, SSE
# subscribers spread over the three, one HTTP publisher on node 1; node 3 is killed (SIGKILL)
# mid-run and its subscribers move to another node with Last-Event-ID (`fanout --follow`, as
# EventSource does). Reports deliveries and what was lost (goal: 0).
#
#   tuning/cluster.sh [--conns N] [--topics K] [--msg-rate R] [--duration S] [--kill-at S]
#                     [--build release|debug] [--no-kill] [--out DIR]
#
# Defaults: 10,000 subscribers over 10 topics, 5 messages/s per topic for 12 s, node 3 killed
# 5 s after publishing started. Redis runs on a free loopback port in DIR/redis with no
# persistence; nodes listen on 127.0.0.1:0 with one worker each. Writes DIR/cluster.json (the
# bench report), DIR/bench.txt, DIR/node{1,2,3}.{out,err}, DIR/metrics-node1.txt. Always stops
# by itself; an EXIT trap kills what it started (by PID). Exit status: 0 zero loss; 1 not;
# 2 usage/setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tuning/lib.sh
. "$ROOT/tuning/lib.sh"
CONNS=10000
TOPICS=10
MSG_RATE=5
DURATION=12
KILL_AT=5
KILL=1
BUILD=release
OUT=""

die() {
    echo "cluster.sh: $*" >&2
    exit 2
}
log() { echo "cluster.sh [$(date -u +%H:%M:%S)] $*"; }

while (($#)); do
    case "$1" in
    --conns) CONNS="${2:?}"; shift 2 ;;
    --topics) TOPICS="${2:?}"; shift 2 ;;
    --msg-rate) MSG_RATE="${2:?}"; shift 2 ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    --kill-at) KILL_AT="${2:?}"; shift 2 ;;
    --no-kill) KILL=0; shift ;;
    --build) BUILD="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
for v in CONNS TOPICS DURATION KILL_AT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a whole number"
done
((KILL_AT < DURATION)) || die "--kill-at must be less than --duration"
command -v redis-server >/dev/null || die "redis-server not installed (Debian package redis-server)"
command -v jq >/dev/null || die "jq not installed"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "$OUT" ]] || OUT="$ROOT/target/cluster-logs/$STAMP"
mkdir -p "$OUT/redis"
BIN="$ROOT/target/$BUILD"
flag=()
[[ "$BUILD" == release ]] && flag=(--release)
log "building the $BUILD binaries (no-op when current)"
(cd "$ROOT" && cargo build -q "${flag[@]}" -p uringcast -p uringcast-bench --bins)

PIDS=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill_pid "$p"; done
    log "logs in $OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$OUT/redis" --save '' --appendonly no \
    >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$PORT" ping >/dev/null || die "redis-server did not start (see $OUT/redis.log)"
log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$PORT"

ADDRS=()
NODE_PIDS=()
for k in 1 2 3; do
    "$BIN/uringcast" serve --listen 127.0.0.1:0 --workers 1 --publish-open true \
        --cluster-redis-url "redis://127.0.0.1:$PORT/0" --history-messages 10000 \
        --connections-max $((CONNS + 1000)) >"$OUT/node$k.out" 2>"$OUT/node$k.err" &
    NODE_PIDS+=($!)
    PIDS+=($!)
    addr=$(server_addr "$!" "$OUT/node$k.out" "$OUT/node$k.err") || die "node $k did not start (see $OUT/node$k.err)"
    ADDRS+=("$addr")
done
log "nodes: ${ADDRS[*]}"

SUBS=()
for a in "${ADDRS[@]}"; do SUBS+=(--url "http://$a/sse?topic={topic}"); done
TIME_LIMIT=$((DURATION + 90))
BENCH=("$BIN/uringcast-bench" fanout "${SUBS[@]}" --follow
    --publish-url "http://${ADDRS[0]}/publish?topic={topic}" --conns "$CONNS" --topics "$TOPICS"
    --msg-rate "$MSG_RATE" --duration "${DURATION}s" --drain 5s --connect-timeout 60s
    --max-time "${TIME_LIMIT}s" --quiet --json "$OUT/cluster.json")
log "${BENCH[*]}"
timeout "$((TIME_LIMIT + 30))" "${BENCH[@]}" >"$OUT/bench.txt" 2>&1 &
BENCH_PID=$!
PIDS+=("$BENCH_PID")

published() {
    curl -s "http://${ADDRS[0]}/metrics" | awk '/^uringcast_cluster_published_total /{print $2}'
}
if ((KILL)); then
    # Publishing starts once every subscriber is connected: the first stored publish.
    until [[ "$(published)" -gt 0 ]] 2>/dev/null; do
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.2
    done
    sleep "$KILL_AT"
    log "killing node 3 (${ADDRS[2]}) with SIGKILL; $(published) messages published so far"
    kill -KILL "${NODE_PIDS[2]}" 2>/dev/null || true
fi
set +e
wait "$BENCH_PID"
rc=$?
set -e
curl -s "http://${ADDRS[0]}/metrics" >"$OUT/metrics-node1.txt" || true
cat "$OUT/bench.txt"
[[ -s "$OUT/cluster.json" ]] || die "no report (bench exit $rc)"
jq -r '"cluster: \(.connections_opened) subscribers, \(.published) published, \(.deliveries) of \(.deliveries_expected) deliveries (\(.deliveries_per_s)/s), followed \(.followed), drops \(.drops); missing \(.missing), duplicates \(.duplicates), out of order \(.out_of_order); latency p50 \(.latency_us.p50) us p99 \(.latency_us.p99) us"' "$OUT/cluster.json" || true
grep -E '^uringcast_cluster_(redis_roundtrip|publish_errors|queue_full|reconnects)' "$OUT/metrics-node1.txt" | sed 's/^/node1: /' || true
missing=$(jq '.missing + .duplicates + .out_of_order' "$OUT/cluster.json")
((missing == 0)) || exit 1
