#!/usr/bin/env bash
# uringcast capacity experiment: how many connections does this box hold, and at what cost?
#
#   tuning/capacity.sh [--steps 10000,25000,...] [--max N] [--time-limit 90m] [--out DIR]
#   tuning/capacity.sh --ci           # one 20k step, under ~3 minutes, exit 1 if it fails
#
# Starts `uringcast serve` (release build; --ci takes the debug build when that is all there is)
# sized for the largest step, then for each step N: `uringcast-bench hold` opens N connections
# (half SSE, half WebSocket, from as many 127.0.0.x source addresses as the port range needs)
# and holds them past the heartbeat deadline; while they are held, --messages messages are
# published to their topic (at most --msg-rate/s and 100k/N per s, since each is N sends) and a
# `uringcast-bench fanout` sample of --sample more subscribers measures publish-to-receive
# latency and loss. The script records server RSS, kernel socket memory (/proc/net/sockstat,
# /proc/slabinfo, Slab in /proc/meminfo: differences across the step), server CPU, heartbeats.
# Between steps it waits for the kernel to tear the sockets down (sockstat `inuse` falls back).
# The ramp stops at the first step that loses anything (a connection not held, a silent
# connection, a missing message), at --max, at the memory guard or at --time-limit.
#
# Other flags: --hold D (least held time after the ramp, 100s), --heartbeat-interval D (server,
# 30s; a connection silent for 3 intervals + 5 s counts as lost), --sample N (1000),
# --messages N (3), --msg-rate R (1), --send-budget S (20000), --mem-stop-gib G (abort a step above G GiB used, 20),
# --proto mixed|sse|ws (mixed), --ramp-rate R (new connections/s, 5000), --workers N (server), --no-sysctl, --sysctl (also
# with --ci, which skips it by default),
# --build release|debug.
#
# Writes DIR/capacity.csv, DIR/capacity.json, DIR/capacity.svg (DIR default docs/capacity, for
# --ci target/capacity-ci) and per-step bench reports and logs under target/capacity-logs/.
# As root it runs `tuning/sysctl.sh apply --connections MAX` first and `revert` at exit, and
# prints what could not be changed. Always stops by itself: every wait is bounded by
# --time-limit; an EXIT trap kills what it started (by PID) and waits for teardown.
# Exit status: 0 every step held with zero loss; 1 a step failed or was cut short; 2 usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tuning/lib.sh
. "$ROOT/tuning/lib.sh"
ORIG_ARGS=("$@")
STEPS="10000,25000,50000,100000,200000,400000,700000,1000000"
MAX=0
TIME_LIMIT=5400
OUT=""
# Held time after the ramp at least this long (longer when the fan-out needs it).
HOLD_S=100
# Server heartbeat interval: at 1M connections, 30 s is 33k heartbeat sends/s on 2 cores. At
# 15 s the harness fell behind on a busy box (unanswered pings, see docs/capacity.md).
HB_INTERVAL_S=30
# New connections per second during a ramp (uringcast-bench --rate); 0 = as fast as it can.
RAMP_RATE=5000
# Which protocols the held connections speak: mixed (every other one SSE / WebSocket), sse, ws.
PROTO=mixed
SAMPLE=1000
# Messages published per step, at most MSG_RATE per second and at most SEND_BUDGET / N per
# second (each message is N sends; 20k sends/s is what the server got on the shared dev VM at
# load 15, so messages do not queue behind each other there).
MSG_COUNT=3
MSG_RATE=1
SEND_BUDGET=20000
# Handshake, pong and request deadlines for server and harness on a shared, loaded box.
SLACK_S=120
MEM_STOP_GIB=20
SYSCTL=1
BUILD=""
CI=0
# Workers for the server and for the harness: one event loop per core each.
WORKERS=0

usage() {
    sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "capacity.sh: $*" >&2
    exit 2
}
log() { echo "capacity.sh [$(date -u +%H:%M:%S)] $*"; }

# Seconds from "90m", "30s", "2h" or a bare number of seconds.
seconds() {
    local v="$1"
    case "$v" in
    *h) echo $((${v%h} * 3600)) ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo $((${v%s})) ;;
    *) echo $((v)) ;;
    esac
}

while (($#)); do
    case "$1" in
    --steps) STEPS="${2:?--steps needs a list}"; shift 2 ;;
    --max) MAX="${2:?--max needs a number}"; shift 2 ;;
    --time-limit) TIME_LIMIT="$(seconds "${2:?}")"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    --hold) HOLD_S="$(seconds "${2:?}")"; shift 2 ;;
    --heartbeat-interval) HB_INTERVAL_S="$(seconds "${2:?}")"; shift 2 ;;
    --sample) SAMPLE="${2:?}"; shift 2 ;;
    --msg-rate) MSG_RATE="${2:?}"; shift 2 ;;
    --messages) MSG_COUNT="${2:?}"; shift 2 ;;
    --send-budget) SEND_BUDGET="${2:?}"; shift 2 ;;
    --ramp-rate) RAMP_RATE="${2:?}"; shift 2 ;;
    --proto) PROTO="${2:?}"; shift 2 ;;
    --mem-stop-gib) MEM_STOP_GIB="${2:?}"; shift 2 ;;
    --no-sysctl) SYSCTL=0; shift ;;
    --sysctl) SYSCTL=2; shift ;;
    --build) BUILD="${2:?}"; shift 2 ;;
    --workers) WORKERS="${2:?}"; shift 2 ;;
    --ci)
        CI=1
        STEPS=20000
        TIME_LIMIT=170
        HOLD_S=20
        HB_INTERVAL_S=5
        SAMPLE=200
        # 20k connections fit the default sysctls; CI boxes are not retuned unless --sysctl.
        ((SYSCTL == 2)) || SYSCTL=0
        shift
        ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ "$STEPS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--steps must be a comma list of numbers"
[[ "$MAX" =~ ^[0-9]+$ ]] || die "--max must be a number"
[[ "$SAMPLE" =~ ^[1-9][0-9]*$ ]] || die "--sample must be >= 1"
[[ "$MSG_COUNT" =~ ^[1-9][0-9]*$ ]] || die "--messages must be >= 1"
[[ "$PROTO" =~ ^(mixed|sse|ws)$ ]] || die "--proto must be mixed, sse or ws"
# A connection silent for three heartbeat intervals (+5 s) is stale: on a box where server and
# harness share two busy cores a heartbeat can sit unread in a socket for an interval or more
# (the harness re-arms receives a batch per loop turn), which is lateness, not loss.
HB_MAX_S=$((3 * HB_INTERVAL_S + 5))
((HOLD_S >= HB_MAX_S)) ||
    die "--hold must be at least the heartbeat deadline, 3 x --heartbeat-interval + 5 s = $HB_MAX_S s"
[[ -n "$OUT" ]] || if ((CI)); then OUT="$ROOT/target/capacity-ci"; else OUT="$ROOT/docs/capacity"; fi

START_S=$(date +%s)
DEADLINE_S=$((START_S + TIME_LIMIT))
left_s() { echo $((DEADLINE_S - $(date +%s))); }
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOGS="$ROOT/target/capacity-logs/$STAMP"
mkdir -p "$OUT" "$LOGS"

# The steps to run, ascending, cut at --max.
mapfile -t PLAN < <(tr ',' '\n' <<<"$STEPS" | sort -n | awk -v m="$MAX" 'm == 0 || $1 <= m')
((${#PLAN[@]})) || die "no step left under --max $MAX"
TOP="${PLAN[-1]}"

# ---------------------------------------------------------------------------------------------
# Binaries: release unless --ci finds only a debug build (or --build says otherwise).
if [[ -z "$BUILD" ]]; then
    BUILD=release
    if ((CI)) && [[ ! -x "$ROOT/target/release/uringcast-bench" && -x "$ROOT/target/debug/uringcast-bench" ]]; then
        BUILD=debug
    fi
fi
BIN="$ROOT/target/$BUILD"
if [[ ! -x "$BIN/uringcast" || ! -x "$BIN/uringcast-bench" ]]; then
    log "building the $BUILD binaries"
    flag=()
    [[ "$BUILD" == release ]] && flag=(--release)
    (cd "$ROOT" && cargo build "${flag[@]}" -p uringcast -p uringcast-bench --bins)
fi

# ---------------------------------------------------------------------------------------------
# Readings of the box.
PAGE_BYTES=$(getconf PAGESIZE)
CLK_TCK=$(getconf CLK_TCK)
meminfo_kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
mem_used_kb() { echo $(($(meminfo_kb MemTotal) - $(meminfo_kb MemAvailable))); }
MEM_STOP_KB=$((MEM_STOP_GIB * 1024 * 1024))
sockstat_tcp() { awk -v f="$1" '$1 == "TCP:" {for (i = 2; i < NF; i += 2) if ($i == f) print $(i + 1)}' /proc/net/sockstat; }
# Bytes in slab caches named on the command line (active objects x object size), or empty when
# /proc/slabinfo is not readable.
slab_bytes() {
    [[ -r /proc/slabinfo ]] || return 0
    awk -v names=" $* " 'index(names, " " $1 " ") {s += $2 * $4} END {printf "%.0f\n", s}' /proc/slabinfo 2>/dev/null || true
}
rss_bytes() { awk '/^VmRSS:/ {printf "%.0f\n", $2 * 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Slab caches an idle loopback connection grows (tuning/README.md) plus io_uring requests.
SOCKET_CACHES="TCP sock_inode_cache dentry filp io_kiocb"

# ---------------------------------------------------------------------------------------------
# Cleanup: kill by PID what this script started, wait for teardown, revert sysctls.
SERVER_PID=""
HOLD_PID=""
FANOUT_PID=""
SYSCTL_APPLIED=0
SYSCTL_STATE="$LOGS/sysctl.saved"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kill_pid "$FANOUT_PID"
    kill_pid "$HOLD_PID"
    kill_pid "$SERVER_PID"
    wait_teardown 120 10 || true
    if ((SYSCTL_APPLIED)); then
        URINGCAST_SYSCTL_STATE="$SYSCTL_STATE" "$ROOT/tuning/sysctl.sh" revert >"$LOGS/sysctl-revert.log" 2>&1 ||
            log "sysctl revert reported problems: see $LOGS/sysctl-revert.log"
    fi
    log "logs in $LOGS"
    exit "$rc"
}
BASE_INUSE=$(sockstat_tcp inuse)
trap cleanup EXIT
trap 'exit 130' INT TERM

# TCP sockets of this experiment that are not yet torn down: both ends of every connection to
# the server's port, in any state but TIME_WAIT (which holds no socket) and LISTEN. Counted
# with ss, because sockstat's box-wide `inuse` moves with every other process on the box.
# Empty before the server has a port.
PORT=""
own_sockets() {
    [[ -n "$PORT" ]] || { echo 0; return; }
    { ss -Htn state all exclude time-wait exclude listening "( sport = :$PORT or dport = :$PORT )" 2>/dev/null || true; } | wc -l
}
# Wait (at most $1 s, and never past the deadline + 2 min) until the kernel has torn down the
# sockets of the last step: at most $2 of our sockets left.
wait_teardown() {
    local limit="$1" floor="$2" t0 now left
    t0=$(date +%s)
    while :; do
        left=$(own_sockets)
        ((left <= floor)) && return 0
        now=$(date +%s)
        if ((now - t0 >= limit || now >= DEADLINE_S + 120)); then
            log "teardown: still $left sockets to port $PORT after $((now - t0)) s"
            return 1
        fi
        sleep 1
    done
}

# Ports: each (source address, server address) pair has one ephemeral range. Use enough
# sources for twice the top step, because the previous step's ports sit in TIME_WAIT. Read
# before sysctl.sh widens the range, so a revert by someone else mid-run cannot starve us.
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
PORTS=$((PORT_HI - PORT_LO + 1))
NSRC=$(((2 * TOP + PORTS - 1) / PORTS + 1))
((NSRC <= 240)) || NSRC=240
SRC="127.0.0.2-127.0.0.$((1 + NSRC))"
SAMPLE_SRC="127.0.0.250-127.0.0.251"

# ---------------------------------------------------------------------------------------------
# Kernel settings (root only): sized for the top step with both socket ends on this box.
if ((SYSCTL)) && ((EUID == 0)); then
    log "tuning/sysctl.sh apply --connections $TOP"
    if URINGCAST_SYSCTL_STATE="$SYSCTL_STATE" "$ROOT/tuning/sysctl.sh" apply --connections "$TOP" >"$LOGS/sysctl-apply.log" 2>&1; then
        log "sysctl: applied"
    else
        log "sysctl: some values could not be changed:"
        grep -iE "fail|could not|missing|read-only|permission|rejected" "$LOGS/sysctl-apply.log" | sed 's/^/    /' || true
    fi
    SYSCTL_APPLIED=1
elif ((SYSCTL)); then
    log "not root: sysctls left as they are (tuning/sysctl.sh check shows what is short)"
fi


# ---------------------------------------------------------------------------------------------
# A fresh server per step, sized for the step plus the fan-out sample plus 1/8 spare: accept
# spreads connections over the rings' listeners by SO_REUSEPORT hash, not evenly, and a ring
# whose table is full stops accepting. Fresh per step also because a server that had held and
# dropped 400k stopped accepting on most rings in the next step (docs/capacity.md).
# Timeouts are lenient because the harness shares the cores: a WebSocket client that answers a
# ping 10 s late (the default pong timeout) on a box busy with a million-socket ramp is slow,
# not gone. The experiment measures holding, not the timeout policy.
ADDR=""
DOCTOR_FILE=""
SERVER_ARGS=()
start_server() {
    local n="$1"
    SERVER_ARGS=(serve --listen 127.0.0.1:0 --connections-max "$((n + n / 8 + SAMPLE + 1000))"
        --heartbeat-interval "${HB_INTERVAL_S}s" --pong-timeout "${SLACK_S}s"
        --request-timeout "${SLACK_S}s" --idle-timeout 1h
        # The fan-out sample publishes without a key: an experiment on loopback, said so here.
        --publish-open true)
    ((WORKERS)) && SERVER_ARGS+=(--workers "$WORKERS")
    log "starting $BIN/uringcast ${SERVER_ARGS[*]}"
    DOCTOR_FILE="$LOGS/doctor-$n.txt"
    "$BIN/uringcast" doctor "${SERVER_ARGS[@]:1}" >"$DOCTOR_FILE" 2>&1 || true
    RUST_LOG=warn "$BIN/uringcast" "${SERVER_ARGS[@]}" >"$LOGS/server-$n.out" 2>"$LOGS/server-$n.err" &
    SERVER_PID=$!
    ADDR=$(server_addr "$SERVER_PID" "$LOGS/server-$n.out" "$LOGS/server-$n.err") ||
        die "the server exited at start-up or did not report its address within 60 s"
    PORT="${ADDR##*:}"
    case "$PROTO" in
    sse) URLS=(--url "http://$ADDR/sse?topic={topic}") ;;
    ws) URLS=(--url "ws://$ADDR/ws?topic={topic}") ;;
    *) URLS=(--url "http://$ADDR/sse?topic={topic}" --url "ws://$ADDR/ws?topic={topic}") ;;
    esac
    log "$(head -1 "$LOGS/server-$n.out")"
}

# SSE + WebSocket connections the server holds (0 when /metrics does not answer in time).
server_conns() {
    { curl -s --max-time 5 "http://$ADDR/metrics" || true; } |
        awk '/^uringcast_connections\{kind="(sse|websocket)"\}/ {s += $2} END {print s + 0}'
}

BASE_USED_KB=$(mem_used_kb)
log "baseline: memory used $((BASE_USED_KB >> 20)) GiB, TCP in use $BASE_INUSE, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Kernel readings, each a number of bytes (box-wide; steps use differences).
kernel_tcp_now() { echo $(($(sockstat_tcp mem) * PAGE_BYTES + $(slab_bytes TCP))); }
socket_slab_now() { slab_bytes "$SOCKET_CACHES"; }
slab_now() { echo $(($(meminfo_kb Slab) * 1024)); }

CSV="$OUT/capacity.csv"
echo "target,connections_held,server_rss_bytes,kernel_tcp_bytes,cpu_percent,heartbeats_ok,fanout_p50_ms,fanout_p99_ms,fanout_max_ms,fanout_missing,fanout_messages,harness_cpu_percent,harness_rss_bytes,server_rss_delta_bytes,socket_slab_delta_bytes,slab_delta_bytes,mem_used_delta_bytes,tcp_sockets_delta,own_sockets,ramp_s,connect_rate,teardown_s,load_avg,result" >"$CSV"
STEPS_JSON="$LOGS/steps.jsonl"
: >"$STEPS_JSON"

BEST=0
FAILED=""
PER_CONN_USED_KB=0

for N in "${PLAN[@]}"; do
    # Predict memory from the last step; stop before a step that would cross the guard.
    if ((PER_CONN_USED_KB > 0)); then
        predicted=$((BASE_USED_KB + N * PER_CONN_USED_KB / 1000))
        if ((predicted > MEM_STOP_KB)); then
            FAILED="step $N skipped: predicted $((predicted >> 20)) GiB used > --mem-stop-gib $MEM_STOP_GIB"
            log "$FAILED"
            break
        fi
    fi
    # Publishing: every message is one send per held connection (~5 us of kernel time each on
    # loopback), so the rate drops with N to keep the fan-out from queueing behind itself.
    rate=$(awk -v r="$MSG_RATE" -v n="$N" -v b="$SEND_BUDGET" 'BEGIN {x = b / n; if (x > r) x = r; printf "%.4f", x}')
    fan_s=$(awk -v c="$MSG_COUNT" -v r="$rate" 'BEGIN {x = c / r; printf "%d", (x == int(x)) ? x : int(x) + 1}')
    drain_s=$((10 + N / 20000))
    hold_s=$((fan_s + drain_s + 30 + N / 20000))
    ((hold_s >= HOLD_S)) || hold_s=$HOLD_S
    # A step needs ramp + hold + teardown: at ~3k connections/s on a busy box, plus margins.
    need=$((N / (RAMP_RATE > 0 ? RAMP_RATE : 3000) + hold_s + 30 + N / 20000))
    if (($(left_s) < need)); then
        FAILED="step $N skipped: $(left_s) s left of --time-limit, about $need s needed"
        log "$FAILED"
        break
    fi
    start_server "$N"
    BASE_RSS=$(rss_bytes "$SERVER_PID")
    max_time=$((N / 1000 + hold_s + 60))
    ((max_time <= $(left_s))) || max_time=$(left_s)
    pre_inuse=$(sockstat_tcp inuse)
    pre_ktcp=$(kernel_tcp_now)
    pre_sslab=$(socket_slab_now)
    pre_slab=$(slab_now)
    pre_used_kb=$(mem_used_kb)
    log "step $N: ramping ($PROTO, sources $SRC, hold ${hold_s} s)"
    t_step=$(date +%s)
    "$BIN/uringcast-bench" hold "${URLS[@]}" --conns "$N" --duration "${hold_s}s" \
        --heartbeat-max "${HB_MAX_S}s" --src "$SRC" --max-time "${max_time}s" --quiet \
        --connect-timeout "${SLACK_S}s" --rate "$RAMP_RATE" \
        --json "$LOGS/hold-$N.json" >"$LOGS/hold-$N.txt" 2>&1 &
    HOLD_PID=$!

    # Ramp: until the server holds N, the hold run ends early, memory crosses the guard, or time.
    held_now=0
    aborted=""
    while :; do
        held_now=$(server_conns)
        ((held_now >= N)) && break
        if ! kill -0 "$HOLD_PID" 2>/dev/null; then aborted="the hold run ended during the ramp"; break; fi
        if (($(mem_used_kb) > MEM_STOP_KB)); then aborted="memory guard: over $MEM_STOP_GIB GiB used"; break; fi
        if (($(date +%s) - t_step > max_time)); then aborted="ramp did not finish in $max_time s"; break; fi
        sleep 0.5
    done
    ramp_s=$(($(date +%s) - t_step))
    p50="" p99="" pmax="" missing="" srv_cpu="" msgs=""
    rss=0 ktcp=0 sslab=0 slab=0 used=0 h_rss=0 sockets=0 own=0
    if [[ -z "$aborted" ]]; then
        # Memory while all N are held and quiet (before the sample adds its connections).
        sleep 2
        rss=$(rss_bytes "$SERVER_PID")
        h_rss=$(rss_bytes "$HOLD_PID")
        ktcp=$(($(kernel_tcp_now) - pre_ktcp))
        sslab=$(($(socket_slab_now) - pre_sslab))
        slab=$(($(slab_now) - pre_slab))
        used=$((($(mem_used_kb) - pre_used_kb) * 1024))
        sockets=$(($(sockstat_tcp inuse) - pre_inuse))
        own=$(own_sockets)
        log "step $N: $held_now held after ${ramp_s} s; fan-out: $MSG_COUNT messages at $rate/s to all, measured on $SAMPLE more subscribers"
        c0=$(cpu_ticks "$SERVER_PID")
        w0=$(date +%s%N)
        "$BIN/uringcast-bench" fanout "${URLS[@]}" --publish-url "http://$ADDR/publish?topic={topic}" \
            --conns "$SAMPLE" --msg-rate "$rate" --duration "${fan_s}s" --drain "${drain_s}s" \
            --src "$SAMPLE_SRC" --max-time "$((fan_s + drain_s + 60 + N / 5000))s" --quiet \
            --connect-timeout "${SLACK_S}s" \
            --json "$LOGS/fanout-$N.json" >"$LOGS/fanout-$N.txt" 2>&1 &
        FANOUT_PID=$!
        while kill -0 "$FANOUT_PID" 2>/dev/null; do
            if (($(mem_used_kb) > MEM_STOP_KB)); then
                aborted="memory guard: over $MEM_STOP_GIB GiB used"
                kill_pid "$FANOUT_PID"
                break
            fi
            sleep 0.5
        done
        wait "$FANOUT_PID" 2>/dev/null || true
        FANOUT_PID=""
        c1=$(cpu_ticks "$SERVER_PID")
        w1=$(date +%s%N)
        srv_cpu=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((w1 - w0)) 'BEGIN {printf "%.1f", c / hz / (ns / 1e9) * 100}')
    else
        log "step $N: $aborted ($held_now held)"
    fi
    [[ -z "$aborted" ]] || kill_pid "$HOLD_PID"
    wait "$HOLD_PID" 2>/dev/null || true
    HOLD_PID=""
    t_down=$(date +%s)
    wait_teardown 300 $((10 + N / 10000)) || true
    teardown_s=$(($(date +%s) - t_down))
    kill_pid "$SERVER_PID"
    SERVER_PID=""
    wait_teardown 120 10 || true

    # Results of the two bench runs.
    hj="$LOGS/hold-$N.json"
    fj="$LOGS/fanout-$N.json"
    held=$(jq -r '.connections_held // 0' "$hj" 2>/dev/null || echo 0)
    stale=$(jq -r '.stale // 0' "$hj" 2>/dev/null || echo 0)
    h_ok=$(jq -r '.success // false' "$hj" 2>/dev/null || echo false)
    h_cpu=$(jq -r '.harness_cpu_percent // 0' "$hj" 2>/dev/null || echo 0)
    conn_rate=$(jq -r '.connect_rate // 0 | floor' "$hj" 2>/dev/null || echo 0)
    hb_ok=$((held > stale ? held - stale : 0))
    f_ok=false
    if [[ -s "$fj" ]]; then
        p50=$(jq -r '.latency_us.p50 / 1000' "$fj")
        p99=$(jq -r '.latency_us.p99 / 1000' "$fj")
        pmax=$(jq -r '.latency_us.max / 1000' "$fj")
        missing=$(jq -r '.missing' "$fj")
        msgs=$(jq -r '.published' "$fj")
        f_ok=$(jq -r '.success' "$fj")
    fi
    result=ok
    if [[ -n "$aborted" ]]; then
        result="aborted: $aborted"
    elif [[ "$h_ok" != true ]]; then
        result="hold failed: $(jq -r '.failures | join("; ")' "$hj" 2>/dev/null || echo "no report")"
    elif [[ "$f_ok" != true ]]; then
        result="fanout failed: $(jq -r '.failures | join("; ")' "$fj" 2>/dev/null || echo "no report")"
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "$N,$held,$rss,$ktcp,$srv_cpu,$hb_ok,$p50,$p99,$pmax,$missing,$msgs,$h_cpu,$h_rss,$((rss - BASE_RSS)),$sslab,$slab,$used,$sockets,$own,$ramp_s,$conn_rate,$teardown_s,$load,\"${result//\"/\'}\"" >>"$CSV"
    jq -nc --argjson n "$N" --argjson held "$held" --argjson rss "$rss" --argjson base_rss "$BASE_RSS" \
        --argjson ktcp "$ktcp" --argjson sslab "$sslab" --argjson slab "$slab" \
        --argjson used "$used" --argjson sockets "$sockets" --argjson own "$own" --arg cpu "$srv_cpu" \
        --argjson hb_ok "$hb_ok" --argjson stale "$stale" --argjson h_rss "$h_rss" \
        --argjson ramp_s "$ramp_s" --argjson teardown_s "$teardown_s" --arg rate "$rate" \
        --arg load "$load" --arg result "$result" \
        --slurpfile hold <(cat "$hj" 2>/dev/null || echo null) \
        --slurpfile fanout <(cat "$fj" 2>/dev/null || echo null) \
        '{target: $n, connections_held: $held, server_rss_bytes: $rss,
          server_rss_delta_bytes: ($rss - $base_rss), kernel_tcp_bytes: $ktcp,
          socket_slab_delta_bytes: $sslab, slab_delta_bytes: $slab, mem_used_delta_bytes: $used,
          tcp_sockets_delta: $sockets, own_sockets: $own, harness_rss_bytes: $h_rss,
          server_cpu_percent: (if $cpu == "" then null else ($cpu | tonumber) end),
          heartbeats_ok: $hb_ok, stale: $stale, ramp_s: $ramp_s, teardown_s: $teardown_s,
          publish_rate_per_s: ($rate | tonumber), load_avg_1m: ($load | tonumber),
          server_bytes_per_connection: (if $held > 0 then (($rss - $base_rss) / $held | floor) else null end),
          kernel_bytes_per_connection_pair: (if $held > 0 then ($slab / $held | floor) else null end),
          result: $result, hold: $hold[0], fanout: $fanout[0]}' >>"$STEPS_JSON"
    log "step $N: $result; held $held (stale $stale), server RSS +$(((rss - BASE_RSS) >> 20)) MiB, kernel slab +$((slab >> 20)) MiB for +$sockets sockets box-wide ($own ours), fan-out p50 ${p50:-?} ms p99 ${p99:-?} ms, server CPU ${srv_cpu:-?} %, teardown ${teardown_s} s"
    if [[ "$result" != ok ]]; then
        FAILED="step $N: $result"
        break
    fi
    BEST=$held
    ((held > 0)) && PER_CONN_USED_KB=$((used * 1000 / 1024 / held))
done

# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Write the JSON summary and the plot.
jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg kernel "$(uname -r)" \
    --arg cpus "$(nproc)" --arg mem_total_kb "$(meminfo_kb MemTotal)" --arg nofile "$(ulimit -n)" \
    --arg command "tuning/capacity.sh $(printf '%q ' "${ORIG_ARGS[@]:-}")" \
    --arg server "${SERVER_ARGS[*]}" --argjson best "$BEST" --arg stopped "$FAILED" \
    --arg doctor "$(cat "$DOCTOR_FILE" 2>/dev/null || true)" \
    '{date: $date, machine: {kernel: $kernel, cpus: ($cpus | tonumber),
      mem_total_bytes: (($mem_total_kb | tonumber) * 1024), rlimit_nofile: ($nofile | tonumber)},
      command: $command, server: $server, highest_held_zero_loss: $best,
      stopped: (if $stopped == "" then null else $stopped end), doctor: $doctor, steps: .}' \
    "$STEPS_JSON" >"$OUT/capacity.json"
if command -v python3 >/dev/null; then
    python3 "$ROOT/tuning/capacity_plot.py" "$CSV" "$OUT/capacity.svg" ||
        log "plot failed (the CSV and JSON are written)"
else
    log "python3 not found: no plot (the CSV and JSON are written)"
fi
log "highest count held with zero loss: $BEST; results in $OUT"
if [[ -n "$FAILED" ]]; then
    log "stopped: $FAILED"
    exit 1
fi
exit 0
