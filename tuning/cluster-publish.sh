#!/usr/bin/env bash
# Highest publish rate through Redis: three `uringcast serve` nodes sharing one redis-server,
# and, in the same run for comparison, one single-node server (no Redis). For each publisher
# count P in the list, three `uringcast-bench fanout` processes (one per node; all three on the
# single node) each publish over P HTTP keep-alive connections (one POST in flight each) to P
# topics of their own at a rate far above what the box can take, with a few SSE subscribers
# spread over the nodes. The rates come from the servers' own counters, sampled over a
# window once publishing runs: publishes/s (stored by Redis: `uringcast_cluster_published_total`
# summed over the nodes; single node: `uringcast_published_total`) and deliveries/s
# (`uringcast_delivered_total`, summed).
#
#   tuning/cluster-publish.sh [--publishers "1 4 16"] [--window S] [--subs-per-topic N]
#                             [--build release|debug] [--out DIR]
#
# Writes DIR/results.txt (one line per run), DIR/<run>/bench-*.txt, node logs and each cluster
# node's Redis counters (round trips, publish errors, full queues). Always stops
# by itself: each bench process has a --max-time, and an EXIT trap kills what the script
# started (by PID). Exit status: 0 done; 2 usage/setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tuning/lib.sh
. "$ROOT/tuning/lib.sh"
PUBLISHERS="1 4 16"
WINDOW=3
SUBS_PER_TOPIC=3
BUILD=release
OUT=""

die() {
    echo "cluster-publish.sh: $*" >&2
    exit 2
}
log() { echo "cluster-publish.sh [$(date -u +%H:%M:%S)] $*"; }

while (($#)); do
    case "$1" in
    --publishers) PUBLISHERS="${2:?}"; shift 2 ;;
    --window) WINDOW="${2:?}"; shift 2 ;;
    --subs-per-topic) SUBS_PER_TOPIC="${2:?}"; shift 2 ;;
    --build) BUILD="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
for v in WINDOW SUBS_PER_TOPIC; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive whole number"
done
for p in $PUBLISHERS; do
    [[ "$p" =~ ^[1-9][0-9]*$ ]] || die "--publishers takes positive whole numbers, not '$p'"
done
command -v redis-server >/dev/null || die "redis-server not installed (Debian package redis-server)"
command -v curl >/dev/null || die "curl not installed"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "$OUT" ]] || OUT="$ROOT/target/cluster-publish-logs/$STAMP"
mkdir -p "$OUT"
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

# start_node DIR NAME ARGS...: start a node; sets ADDR and PID (no subshell, so PIDS keeps it).
start_node() {
    local dir="$1" name="$2"
    shift 2
    "$BIN/uringcast" serve --listen 127.0.0.1:0 --workers 1 --publish-open true "$@" \
        >"$dir/$name.out" 2>"$dir/$name.err" &
    PID=$!
    PIDS+=("$PID")
    local addr
    addr=$(server_addr "$PID" "$dir/$name.out" "$dir/$name.err") || die "$name did not start (see $dir/$name.err)"
    ADDR="$addr"
}

# metric ADDR NAME: a counter's value on one node (0 when absent).
metric() {
    curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n {v = $2} END {print v + 0}'
}

# sum NAME ADDR...: a counter summed over nodes.
sum() {
    local name="$1" total=0
    shift
    for a in "$@"; do total=$((total + $(metric "$a" "$name"))); done
    echo "$total"
}

# measure LABEL PUBLISHED_COUNTER P ADDR...: three bench publishers of P connections each
# (process k on node k mod the node count), subscribers on every node; prints one result line.
measure() {
    local label="$1" counter="$2" p="$3"
    shift 3
    local addrs=("$@") dir="$OUT/$label-p$p" bench_pids=()
    mkdir -p "$dir"
    local subs=()
    for a in "${addrs[@]}"; do subs+=(--url "http://$a/sse?topic={topic}"); done
    for k in 0 1 2; do
        local at="${addrs[$((k % ${#addrs[@]}))]}"
        # 20,000 messages/s asked per topic: far above one connection's round trip.
        "$BIN/uringcast-bench" fanout "${subs[@]}" \
            --publish-url "http://$at/publish?topic={topic}" --topic-name "b$k-t{i}" \
            --topics "$p" --publishers "$p" --conns $((p * SUBS_PER_TOPIC)) \
            --msg-rate 20000 --duration "$((WINDOW + 3))s" --drain 1s \
            --max-time "$((WINDOW + 20))s" --quiet --json "$dir/bench-$k.json" \
            >"$dir/bench-$k.txt" 2>&1 &
        bench_pids+=($!)
        PIDS+=($!)
    done
    # Publishing starts once each process's subscribers are connected.
    local waited=0
    until (($(sum "$counter" "${addrs[@]}") > 0)); do
        sleep 0.2
        waited=$((waited + 1))
        ((waited < 150)) || die "$label P=$p: nothing published within 30 s (see $dir)"
    done
    sleep 1
    local t0 p0 d0 t1 p1 d1
    t0=$(date +%s.%N); p0=$(sum "$counter" "${addrs[@]}"); d0=$(sum uringcast_delivered_total "${addrs[@]}")
    sleep "$WINDOW"
    t1=$(date +%s.%N); p1=$(sum "$counter" "${addrs[@]}"); d1=$(sum uringcast_delivered_total "${addrs[@]}")
    for b in "${bench_pids[@]}"; do kill_pid "$b"; done
    python3 -c "
import sys
t = $t1 - $t0
print(f'$label publishers={3 * $p} publishes/s={($p1 - $p0) / t:.0f} deliveries/s={($d1 - $d0) / t:.0f} window_s={t:.2f} load=' + open('/proc/loadavg').read().split()[0])
" | tee -a "$OUT/results.txt"
}

log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for p in $PUBLISHERS; do
    # A fresh Redis and fresh nodes per step, so no step inherits another's history.
    dir="$OUT/cluster-p$p-setup"
    mkdir -p "$dir/redis"
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --save '' --appendonly no \
        >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    PIDS+=("$redis_pid")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || die "redis-server did not start (see $dir/redis.log)"
    nodes=()
    node_pids=()
    for k in 1 2 3; do
        start_node "$dir" "node$k" --cluster-redis-url "redis://127.0.0.1:$port/0"
        nodes+=("$ADDR")
        node_pids+=("$PID")
    done
    measure cluster uringcast_cluster_published_total "$p" "${nodes[@]}"
    for k in 0 1 2; do
        curl -s "http://${nodes[$k]}/metrics" |
            grep -E '^uringcast_cluster_(redis_roundtrip|publish_errors|queue_full)' \
                >"$dir/metrics-node$((k + 1)).txt" || true
    done
    for n in "${node_pids[@]}" "$redis_pid"; do kill_pid "$n"; done

    dir="$OUT/single-p$p-setup"
    mkdir -p "$dir"
    start_node "$dir" single
    measure single uringcast_published_total "$p" "$ADDR"
    kill_pid "$PID"
done
cat "$OUT/results.txt"
