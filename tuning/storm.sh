#!/usr/bin/env bash
# uringcast reconnect storm: hold N SSE subscribers, drop them all at once while publishing goes
# on, reconnect them all at once with Last-Event-ID; every one must be accepted, resume, and
# miss nothing.
#
#   tuning/storm.sh [--conns N] [--msg-rate R] [--storm-at S] [--after S] [--ramp-rate R] [--proto ws]
#   tuning/storm.sh --ci          # 20,000 connections, about 15-40 s; exit 1 if anything is lost
#
# Starts `uringcast serve` on 127.0.0.1:0 (release build; --ci takes the debug build when that
# is all there is) sized for twice N (the dropped connections' slots are still closing while the
# reconnects arrive), then runs `uringcast-bench fanout --storm-at`: N subscribers on one topic
# (--topics K to spread them), one HTTP publisher at --msg-rate messages/s per topic; --storm-at
# seconds after publishing starts every subscriber is aborted (the engine closes its direct
# descriptor, as a dying process would) and reconnected at once with `Last-Event-ID`;
# publishing goes on for --after more seconds. Connections come from as many 127.0.0.x source
# addresses as twice N needs (the drop leaves the old ports in TIME_WAIT).
#
# While it runs, the server's accept counters (`uringcast_accepted_total`,
# `uringcast_accept_paused_total`, `uringcast_accept_errors_total`), open SSE + WebSocket
# connections and the listeners' accept queues (`ss`) are sampled every 0.5 s into
# DIR/metrics.tsv, so an accept stall after the mass drop shows.
#
# Other flags: --proto sse|ws (sse; ws: subscribers on /ws subscribe by message with `since`),
# --topics K (1; only with sse, which puts the topic in the URL), --drain S (10), --build release|debug, --workers N (server and
# harness; 0 = cores), --history-messages N (server, default its own), --time-limit S (bound on
# the bench run; default ramp + storm + after + drain + 60), --out DIR (target/storm-logs/STAMP),
# --sysctl (as root: tuning/sysctl.sh apply --connections 2N, revert at exit; the default for
# N > 20000, --no-sysctl turns it off; --ci skips it unless --sysctl).
#
# Writes DIR/storm.json (the bench report), DIR/bench.txt, DIR/server.{out,err}, DIR/metrics.tsv,
# DIR/metrics-{before,after}.txt. Always stops by itself; an EXIT trap kills what it started
# (by PID) and reverts sysctls. Exit status: 0 zero loss and all resumed; 1 not; 2 usage/setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tuning/lib.sh
. "$ROOT/tuning/lib.sh"
ORIG_ARGS=("$@")
CONNS=20000
TOPICS=1
# Each message is N sends: 2/s to 20k subscribers is 40k deliveries/s, which a shared 2-core
# box serves without queueing; the storm, not the fan-out, should set the pace.
MSG_RATE=2
STORM_AT=4
AFTER=8
DRAIN=10
RAMP_RATE=0
BUILD=""
WORKERS=0
HISTORY=""
TIME_LIMIT=""
OUT=""
SYSCTL=""
CI=0
PROTO=sse

usage() {
    sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "storm.sh: $*" >&2
    exit 2
}
log() { echo "storm.sh [$(date -u +%H:%M:%S)] $*"; }

while (($#)); do
    case "$1" in
    --conns) CONNS="${2:?--conns needs a number}"; shift 2 ;;
    --topics) TOPICS="${2:?}"; shift 2 ;;
    --proto) PROTO="${2:?}"; shift 2 ;;
    --msg-rate) MSG_RATE="${2:?}"; shift 2 ;;
    --storm-at) STORM_AT="${2:?}"; shift 2 ;;
    --after) AFTER="${2:?}"; shift 2 ;;
    --drain) DRAIN="${2:?}"; shift 2 ;;
    --ramp-rate) RAMP_RATE="${2:?}"; shift 2 ;;
    --build) BUILD="${2:?}"; shift 2 ;;
    --workers) WORKERS="${2:?}"; shift 2 ;;
    --history-messages) HISTORY="${2:?}"; shift 2 ;;
    --time-limit) TIME_LIMIT="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    --sysctl) SYSCTL=1; shift ;;
    --no-sysctl) SYSCTL=0; shift ;;
    --ci) CI=1; CONNS=20000; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
for v in CONNS TOPICS STORM_AT AFTER DRAIN RAMP_RATE WORKERS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a whole number"
done
((CONNS >= 1 && TOPICS >= 1 && AFTER >= 1)) || die "--conns, --topics and --after must be >= 1"
[[ "$MSG_RATE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--msg-rate must be a number"
[[ "$PROTO" == sse || "$PROTO" == ws ]] || die "--proto must be sse or ws"
[[ "$PROTO" == sse || "$TOPICS" == 1 ]] || die "--proto ws takes one topic (the URL carries none)"
[[ -z "$HISTORY" || "$HISTORY" =~ ^[1-9][0-9]*$ ]] || die "--history-messages must be >= 1"
if [[ -z "$SYSCTL" ]]; then
    if ((CI || CONNS <= 20000)); then SYSCTL=0; else SYSCTL=1; fi
fi

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "$OUT" ]] || OUT="$ROOT/target/storm-logs/$STAMP"
mkdir -p "$OUT"

# Binaries: release unless --ci finds only a debug build (or --build says otherwise).
if [[ -z "$BUILD" ]]; then
    BUILD=release
    if ((CI)) && [[ ! -x "$ROOT/target/release/uringcast-bench" && -x "$ROOT/target/debug/uringcast-bench" ]]; then
        BUILD=debug
    fi
fi
BIN="$ROOT/target/$BUILD"
# Always through cargo: a no-op when the binaries are current, and never a stale binary.
log "building the $BUILD binaries (no-op when current)"
flag=()
[[ "$BUILD" == release ]] && flag=(--release)
(cd "$ROOT" && cargo build -q "${flag[@]}" -p uringcast -p uringcast-bench --bins)

SERVER_PID=""
SAMPLER_PID=""
SYSCTL_APPLIED=0
SYSCTL_STATE="$OUT/sysctl.saved"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kill_pid "$SAMPLER_PID"
    kill_pid "$SERVER_PID"
    if ((SYSCTL_APPLIED)); then
        URINGCAST_SYSCTL_STATE="$SYSCTL_STATE" "$ROOT/tuning/sysctl.sh" revert >"$OUT/sysctl-revert.log" 2>&1 ||
            log "sysctl revert reported problems: see $OUT/sysctl-revert.log"
    fi
    log "logs in $OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Kernel settings (root only), sized for both socket ends of twice N (old ends still closing).
if ((SYSCTL)) && ((EUID == 0)); then
    log "tuning/sysctl.sh apply --connections $((2 * CONNS))"
    if URINGCAST_SYSCTL_STATE="$SYSCTL_STATE" "$ROOT/tuning/sysctl.sh" apply --connections "$((2 * CONNS))" >"$OUT/sysctl-apply.log" 2>&1; then
        log "sysctl: applied"
    else
        log "sysctl: some values could not be changed (see $OUT/sysctl-apply.log)"
    fi
    SYSCTL_APPLIED=1
elif ((SYSCTL)); then
    log "not root: sysctls left as they are (tuning/sysctl.sh check shows what is short)"
fi

# Source addresses: each (source, server) pair has one ephemeral port range, and the drop leaves
# the old ports in TIME_WAIT, so plan for 2N with each pair at most half full.
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PORT_HI - PORT_LO + 1))
NSRC=$(((4 * CONNS + PORTS - 1) / PORTS))
((NSRC >= 2)) || NSRC=2
((NSRC <= 240)) || NSRC=240
SRC="127.0.0.2-127.0.0.$((1 + NSRC))"

SERVER_ARGS=(serve --listen 127.0.0.1:0 --connections-max "$((2 * CONNS + CONNS / 8 + 1000))"
    --request-timeout 120s --idle-timeout 1h
    # The harness publishes without a key: an experiment on loopback, said so here.
    --publish-open true)
((WORKERS)) && SERVER_ARGS+=(--workers "$WORKERS")
[[ -n "$HISTORY" ]] && SERVER_ARGS+=(--history-messages "$HISTORY")
log "starting $BIN/uringcast ${SERVER_ARGS[*]}"
RUST_LOG=warn "$BIN/uringcast" "${SERVER_ARGS[@]}" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
ADDR=$(server_addr "$SERVER_PID" "$OUT/server.out" "$OUT/server.err") ||
    die "the server exited at start-up or did not report its address within 60 s"

metrics() { curl -s --max-time 5 "http://$ADDR/metrics" || true; }
PORT="${ADDR##*:}"
# Connections waiting in the listeners' accept queues (Recv-Q of every listener on the port):
# above zero for long while accepted_total stands still = the server is not accepting.
accept_queue() {
    { ss -Hltn "( sport = :$PORT )" 2>/dev/null || true; } | awk '{q += $2} END {print q + 0}'
}
# One line per sample: unix time, the accept counters, open subscriber connections, and the
# accept queues.
sample() {
    metrics | awk -v t="$(date +%s.%N)" -v q="$(accept_queue)" '
        /^uringcast_accepted_total / {a = $2}
        /^uringcast_accept_paused_total / {p = $2}
        /^uringcast_accept_errors_total/ {e += $2}
        /^uringcast_connections\{kind="(sse|websocket)"\}/ {s += $2}
        END {printf "%.2f\t%d\t%d\t%d\t%d\t%d\n", t, a, p, e, s, q}'
}
# Box-wide TcpExt counters of a connect storm's trouble: accept queues that overflowed (the SYN or
# the final ACK dropped, retried by the client 1 s, 3 s, 7 s later) and SYN queue drops.
LISTEN_KEYS="ListenOverflows ListenDrops TCPReqQFullDrop TCPReqQFullDoCookies"
listen_counters() {
    awk -v keys=" $LISTEN_KEYS " '$1 == "TcpExt:" {
        if (!n) {for (i = 2; i <= NF; i++) name[i] = $i; n = 1; next}
        for (i = 2; i <= NF; i++) if (index(keys, " " name[i] " ")) printf "%s=%s ", name[i], $i
    }' /proc/net/netstat
}
LISTEN_BEFORE=$(listen_counters)
metrics >"$OUT/metrics-before.txt"
printf 'unix_s\taccepted_total\taccept_paused_total\taccept_errors_total\tsubscribers_open\taccept_queue\n' >"$OUT/metrics.tsv"
(while :; do sample >>"$OUT/metrics.tsv"; sleep 0.5; done) &
SAMPLER_PID=$!

RAMP_S=0
((RAMP_RATE > 0)) && RAMP_S=$((CONNS / RAMP_RATE + 1))
DURATION=$((STORM_AT + AFTER))
[[ -n "$TIME_LIMIT" ]] || TIME_LIMIT=$((RAMP_S + DURATION + DRAIN + 60 + CONNS / 5000))
if [[ "$PROTO" == ws ]]; then
    SUBSCRIBERS=(--url "ws://$ADDR/ws" --ws-subscribe-msg '{"op":"subscribe","topic":"{topic}","since":"{since}"}')
else
    SUBSCRIBERS=(--url "http://$ADDR/sse?topic={topic}")
fi
BENCH=("$BIN/uringcast-bench" fanout "${SUBSCRIBERS[@]}"
    --publish-url "http://$ADDR/publish?topic={topic}" --conns "$CONNS" --topics "$TOPICS"
    --msg-rate "$MSG_RATE" --duration "${DURATION}s" --storm-at "${STORM_AT}s" --drain "${DRAIN}s"
    --rate "$RAMP_RATE" --src "$SRC" --connect-timeout 60s --max-time "${TIME_LIMIT}s" --quiet
    --json "$OUT/storm.json")
((WORKERS)) && BENCH+=(--workers "$WORKERS")
log "storm: $CONNS $PROTO subscribers on $TOPICS topic(s) from $SRC, $MSG_RATE msg/s per topic, drop at ${STORM_AT}s, publishing ${AFTER}s more"
log "${BENCH[*]}"
t0=$(date +%s.%N)
set +e
timeout "$((TIME_LIMIT + 30))" "${BENCH[@]}" >"$OUT/bench.txt" 2>&1
rc=$?
set -e
t1=$(date +%s.%N)
sleep 1
kill_pid "$SAMPLER_PID"
SAMPLER_PID=""
metrics >"$OUT/metrics-after.txt"
cat "$OUT/bench.txt"
if [[ -s "$OUT/storm.json" ]] && command -v jq >/dev/null; then
    jq -r '"storm: \(.storm.dropped) dropped, \(.storm.reconnected) reconnected, \(.storm.reconnect_failed) failed, \(.storm.reconnect_rate)/s, all reconnected \(.storm.all_reconnected_s) s, all resumed \(.storm.all_resumed_s) s, resets \(.storm.resets); missing \(.missing), duplicates \(.duplicates), out of order \(.out_of_order)"' "$OUT/storm.json"
fi
awk '/^uringcast_(accepted_total|accept_paused_total|accept_errors_total|resets_total|replayed_total)/' "$OUT/metrics-after.txt" | sed 's/^/server: /'
LISTEN_AFTER=$(listen_counters)
for k in $LISTEN_KEYS; do
    b=$(tr ' ' '\n' <<<"$LISTEN_BEFORE" | sed -n "s/^$k=//p")
    a=$(tr ' ' '\n' <<<"$LISTEN_AFTER" | sed -n "s/^$k=//p")
    [[ -n "$a" && -n "$b" ]] && echo "kernel (box-wide, during the run): TcpExt $k +$((a - b))"
done
jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg server "${SERVER_ARGS[*]}" \
    --arg command "tuning/storm.sh $(printf '%q ' "${ORIG_ARGS[@]:-}")" \
    '{date: $date, kernel: $kernel, cpus: ($cpus | tonumber), load_avg: $load, command: $command, server: $server}' \
    >"$OUT/run.json" 2>/dev/null || true
log "bench exit $rc after $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s (load $(cut -d' ' -f1-3 /proc/loadavg))"
case "$rc" in
0) exit 0 ;;
1) exit 1 ;;
124 | 137) log "the bench run passed its time limit"; exit 1 ;;
*) exit 2 ;;
esac
