#!/usr/bin/env bash
# bench/compare.sh: run the same uringcast-bench scenarios against uringcast and the peer servers
# in bench/peers/, one server at a time, and print a markdown table (medians, ratios to uringcast).
#
# The server runs alone on one core (taskset), the harness on another with one engine worker,
# so figures are per server core. Each run starts a fresh server and is bounded in time; the
# servers of one cell alternate within each repetition. See bench/README.md ("Comparing with peers").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARGS_GIVEN="$*"
PEERS_DIR=$ROOT/bench/peers
ALL_PEERS=uringcast,fastws,axum,bun,uws-js,node-ws

PEERS=$ALL_PEERS
QUICK=0
REPS=""
OUT=""
WORK=""
BUILD=1
SERVER_CPU=0
HARNESS_CPU=1
ONLY=""
BENCH=""
UC_BIN=""
PORT_BASE=""
CALIBRATE=1

usage() {
    cat <<EOF
usage: bench/compare.sh [options]
  --quick              1 repetition, short durations (a smoke run of the whole matrix)
  --peers a,b,c        servers to run (default: $ALL_PEERS); ratios need uringcast
  --only p1,p2         run only cells whose name starts with one of these (echo, fanout-ws, hold, ...);
                       a name ending in \$ matches exactly ('fanout-sse-1k-p100\$')
  --reps N             repetitions per cell (default 3; 1 with --quick)
  --out FILE           also write the markdown report to FILE
  --work DIR           keep per-run JSON, harness output and server logs here (default: a temp dir)
  --no-build           use what is built
  --server-cpu N       core for the server (default 0)
  --harness-cpu N      core for the harness (default 1)
  --bench BIN          uringcast-bench binary (default: target/release/uringcast-bench, built here)
  --uringcast BIN      uringcast binary (default: target/release/uringcast, built here)
  --port-base N        first server port (default: just outside net.ipv4.ip_local_port_range)
  --no-calibrate       skip the harness's own ceiling (uringcast-bench calibrate, SSE and WS)
EOF
}

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --peers) PEERS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --work) WORK=$2; shift ;;
    --no-build) BUILD=0 ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --harness-cpu) HARNESS_CPU=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --uringcast) UC_BIN=$2; shift ;;
    --port-base) PORT_BASE=$2; shift ;;
    --no-calibrate) CALIBRATE=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if ((QUICK)); then
    REPS=${REPS:-1}
    ECHO_D=2s FANOUT_D=2s HOLD_D=3s DRAIN=2s CAL_D=2s
else
    REPS=${REPS:-3}
    ECHO_D=10s FANOUT_D=10s HOLD_D=20s DRAIN=3s CAL_D=5s
fi
BENCH=${BENCH:-$ROOT/target/release/uringcast-bench}
UC_BIN=${UC_BIN:-$ROOT/target/release/uringcast}
if [[ -z $WORK ]]; then WORK=$(mktemp -d /tmp/uringcast-compare.XXXXXX); fi
mkdir -p "$WORK"
RUNS=$WORK/runs.tsv
SKIPPED=$WORK/skipped.txt
: >"$RUNS"
: >"$SKIPPED"
log() { echo "[compare $(date -u +%H:%M:%S)] $*" >&2; }

IFS=, read -r -a PEER_LIST <<<"$PEERS"
for p in "${PEER_LIST[@]}"; do
    [[ ,$ALL_PEERS, == *",$p,"* ]] || { echo "compare.sh: unknown peer '$p' (known: $ALL_PEERS)" >&2; exit 2; }
done

# Server ports outside the ephemeral range, so the harness's own connections never take them.
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range
if [[ -n ${PORT_BASE:-} ]]; then
    ((PORT_BASE + 6 < EPH_LO || PORT_BASE > EPH_HI)) ||
        echo "compare.sh: warning: --port-base $PORT_BASE is inside the ephemeral range $EPH_LO-$EPH_HI" >&2
elif ((EPH_HI <= 65000)); then
    PORT_BASE=$((EPH_HI + 100))
elif ((EPH_LO > 100)); then
    PORT_BASE=$((EPH_LO - 40)) # below the range; under 1024 this needs root (or CAP_NET_BIND_SERVICE)
    ((PORT_BASE < 1)) && PORT_BASE=1
else
    echo "compare.sh: no port outside the ephemeral range $EPH_LO-$EPH_HI" >&2
    exit 2
fi
port_of() {
    local i=0 p
    for p in ${ALL_PEERS//,/ }; do
        [[ $p == "$1" ]] && { echo $((PORT_BASE + i)); return; }
        i=$((i + 1))
    done
}

server_cmd() { # peer port -> the command line, one word per line
    local d=$PEERS_DIR/$1
    case $1 in
    # --publish-open: the fan-out cells publish without a key, as they do to every peer.
    uringcast) printf '%s\n' "$UC_BIN" serve --listen "127.0.0.1:$2" --workers 1 --echo-path /echo --publish-open true ;;
    fastws) printf '%s\n' "$d/target/release/fastws-peer" "$2" ;;
    axum) printf '%s\n' "$d/target/release/axum-peer" "$2" ;;
    bun) printf '%s\n' "$d/node_modules/@oven/bun-linux-x64/bin/bun" "$d/server.js" "$2" ;;
    uws-js | node-ws) printf '%s\n' node "$d/server.js" "$2" ;;
    esac
}

skip_peer() { # peer reason
    log "SKIP $1: $2"
    echo "$1: $2" >>"$SKIPPED"
    local kept=() p
    for p in "${PEER_LIST[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
    PEER_LIST=("${kept[@]}")
}

# ---- build ----------------------------------------------------------------------------------
if ((BUILD)); then
    if [[ $BENCH == "$ROOT/target/release/uringcast-bench" || $UC_BIN == "$ROOT/target/release/uringcast" ]]; then
        log "building uringcast and uringcast-bench (release)"
        (cd "$ROOT" && cargo build --release -p uringcast -p uringcast-bench) >"$WORK/build-uringcast.log" 2>&1 ||
            { echo "compare.sh: building uringcast failed, see $WORK/build-uringcast.log" >&2; exit 2; }
    fi
    for p in "${PEER_LIST[@]}"; do
        d=$PEERS_DIR/$p
        blog=$WORK/build-$p.log
        case $p in
        uringcast) continue ;;
        fastws | axum)
            log "building $p (release, own workspace and target dir)"
            cargo build --release --locked --manifest-path "$d/Cargo.toml" --target-dir "$d/target" >"$blog" 2>&1 ||
                skip_peer "$p" "cargo build failed (see $blog)"
            ;;
        bun | uws-js | node-ws)
            log "installing $p (npm ci)"
            (cd "$d" && npm ci --no-audit --no-fund) >"$blog" 2>&1 ||
                skip_peer "$p" "npm ci failed (see $blog)"
            ;;
        esac
    done
fi
[[ -x $BENCH ]] || { echo "compare.sh: no harness at $BENCH" >&2; exit 2; }
for p in "${PEER_LIST[@]}"; do
    mapfile -t cmd < <(server_cmd "$p" 1)
    if [[ ${cmd[0]} == node ]]; then
        command -v node >/dev/null || { skip_peer "$p" "no node on PATH"; continue; }
    elif [[ ! -x ${cmd[0]} ]]; then
        skip_peer "$p" "not built: ${cmd[0]} missing"
        continue
    fi
    if [[ $p == uws-js ]] && ! (cd "$PEERS_DIR/uws-js" && node -e 'require("uWebSockets.js").App') >/dev/null 2>&1; then
        skip_peer "$p" "uWebSockets.js has no native binary for this node (ABI $(node -p process.versions.modules))"
    fi
done
((${#PEER_LIST[@]})) || { echo "compare.sh: no server left to run" >&2; exit 2; }

# ---- cells ----------------------------------------------------------------------------------
# name|harness arguments (@PORT@ = the server's port). Fan-out cells climb a rate ramp: the
# offered deliveries/s is msg-rate x subscribers (1 topic, so every subscriber gets every message).
CELLS=()
# Echo: 1 and 16 messages in flight x 32 B and 1 KiB payloads. The 32 B cells keep their old
# names (echo-1k-m1, echo-1k-m16) so earlier reports stay comparable; 1 KiB cells end in -1KiB.
for size in 32 1024; do
    for m in 1 16; do
        suffix=""
        ((size == 1024)) && suffix=-1KiB
        CELLS+=("echo-1k-m$m$suffix|echo --url ws://127.0.0.1:@PORT@/echo --conns 1000 --inflight $m --size $size --duration $ECHO_D")
    done
done
fanout_cells() { # kind conns label rates...
    local kind=$1 n=$2 label=$3 sub
    shift 3
    if [[ $kind == ws ]]; then sub='ws://127.0.0.1:@PORT@/ws?topic={topic}'; else sub='http://127.0.0.1:@PORT@/sse?topic={topic}'; fi
    for r in "$@"; do
        CELLS+=("fanout-$kind-$label-p$r|fanout --url $sub --publish-url http://127.0.0.1:@PORT@/publish?topic={topic} --conns $n --msg-rate $r --duration $FANOUT_D --drain $DRAIN")
    done
}
for kind in ws sse; do
    if ((QUICK)); then
        # One low rung each: a smoke run of every path that also finishes on a busy machine.
        fanout_cells $kind 1000 1k 20
        fanout_cells $kind 10000 10k 2
    else
        fanout_cells $kind 1000 1k 100 300 1000
        fanout_cells $kind 10000 10k 10 30 100
    fi
done
CELLS+=("hold-ws-10k|hold --url ws://127.0.0.1:@PORT@/ws?topic=a --conns 10000 --duration $HOLD_D --heartbeat-max 600s")
CELLS+=("hold-sse-10k|hold --url http://127.0.0.1:@PORT@/sse?topic=a --conns 10000 --duration $HOLD_D --heartbeat-max 600s")
if [[ -n $ONLY ]]; then
    kept=()
    for c in "${CELLS[@]}"; do
        for o in ${ONLY//,/ }; do
            # "name$" matches one cell exactly (fanout-ws-1k-p100$ without fanout-ws-1k-p1000).
            if [[ $o == *'$' ]]; then
                [[ ${c%%|*} == "${o%'$'}" ]] && { kept+=("$c"); break; }
            else
                [[ ${c%%|*} == "$o"* ]] && { kept+=("$c"); break; }
            fi
        done
    done
    CELLS=("${kept[@]}")
fi

# ---- running one cell against one server ----------------------------------------------------
SPID=""
stop_server() {
    [[ -n $SPID ]] || return 0
    kill "$SPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}
BPID=""
cleanup() {
    [[ -n $BPID ]] && kill "$BPID" 2>/dev/null
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Server CPU = utime + stime of the whole process (/proc/PID/stat fields 14 and 15), read before
# and after the harness run. Unlike a sum over /proc/PID/task/*/schedstat, it keeps the time of
# threads that exited in between (io_uring io-wq workers, runtime helper threads); its unit is a
# clock tick (10 ms at USER_HZ 100), small against the seconds of CPU a run takes.
CLK_TCK=$(getconf CLK_TCK)
# Arithmetic stays in bash (64-bit) or awk's "%.0f": mawk, Debian's default awk, clamps
# printf "%d" at 2^31 - 1, i.e. 2.147 s in nanoseconds.
cpu_ns() { # utime + stime of process $1 (ns), empty when gone
    local stat f
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 0
    # Fields after "(comm)", which may hold spaces: f[0] is field 3 (state), utime 14, stime 15.
    read -r -a f <<<"${stat##*) }"
    echo $(((f[11] + f[12]) * 1000000000 / CLK_TCK))
}
sched_ns() { # cross-check: on-CPU time summed over the threads alive now (ns), empty when gone
    [[ -d /proc/$1 ]] || return 0
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
rss_kb() { awk '/^VmRSS/ {print $2; f = 1} END {if (!f) print 0}' /proc/"$1"/status 2>/dev/null || echo 0; }
port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

run_one() { # cell-name peer rep args-template
    local cell=$1 peer=$2 rep=$3 tmpl=$4 port tag
    port=$(port_of "$peer")
    tag=$cell.$peer.r$rep
    local i
    for i in $(seq 100); do port_busy "$port" || break; sleep 0.1; done
    mapfile -t cmd < <(server_cmd "$peer" "$port")
    local try
    # Up to 3 starts: on a shared machine another job may hold the port for a moment.
    for try in 1 2 3; do
        taskset -c "$SERVER_CPU" "${cmd[@]}" >"$WORK/$tag.server.log" 2>&1 &
        SPID=$!
        for i in $(seq 150); do port_open "$port" && break; kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SPID" 2>/dev/null && port_open "$port" && break
        log "$tag: server start $try failed: $(tail -c 300 "$WORK/$tag.server.log" | tr '\n' ' ' | cut -c1-160)"
        stop_server
        sleep 2
    done
    if [[ -z $SPID ]] || ! port_open "$port"; then
        log "$tag: server did not start (see $WORK/$tag.server.log)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$peer" "$rep" start-failed -1 0 0 0 -1 >>"$RUNS"
        stop_server
        return
    fi
    local rss0 cpu0 peak rss rc=0 cpu1 sch0 sch1 t0 t1 alive=1
    sleep 0.2
    rss0=$(rss_kb "$SPID")
    cpu0=$(cpu_ns "$SPID")
    sch0=$(sched_ns "$SPID")
    peak=$rss0
    read -r -a args <<<"${tmpl//@PORT@/$port}"
    # Every run is bounded twice: the harness's own --max-time, and timeout(1) around it.
    # A server that cannot keep up is cut off at its --max-time and reported failed, with what it
    # achieved until then, instead of stretching the matrix by hours.
    local max_s
    case ${args[0]} in
    echo) max_s=$((${ECHO_D%s} + 40)) ;;
    fanout) max_s=$((${FANOUT_D%s} + ${DRAIN%s} + 40)) ;;
    *) max_s=$((${HOLD_D%s} + 60)) ;;
    esac
    t0=$(date +%s%N)
    taskset -c "$HARNESS_CPU" timeout -k 5 $((max_s + 30)) "$BENCH" "${args[@]}" --workers 1 --quiet \
        --max-time "${max_s}s" --json "$WORK/$tag.json" >"$WORK/$tag.bench.txt" 2>&1 &
    BPID=$!
    while kill -0 "$BPID" 2>/dev/null; do
        rss=$(rss_kb "$SPID")
        ((rss > peak)) && peak=$rss
        sleep 0.2
    done
    wait "$BPID" || rc=$?
    BPID=""
    t1=$(date +%s%N)
    kill -0 "$SPID" 2>/dev/null || alive=0
    cpu1=$(cpu_ns "$SPID")
    sch1=$(sched_ns "$SPID")
    stop_server
    ((alive)) || rc="server-died"
    # A server that died took its CPU figure with it: -1 (shown as "–"), never a made-up number.
    local dcpu=-1 dsch=-1
    [[ -n $cpu0 && -n $cpu1 ]] && dcpu=$((cpu1 - cpu0))
    [[ -n $sch0 && -n $sch1 ]] && dsch=$((sch1 - sch0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$peer" "$rep" "$rc" "$dcpu" $((t1 - t0)) "$rss0" "$peak" "$dsch" >>"$RUNS"
    log "$tag: rc=$rc server_cpu=$((dcpu / 1000000))ms (live-thread schedstat $((dsch / 1000000))ms) wall=$(((t1 - t0) / 1000000))ms peak_rss=${peak}kB"
}

# ---- calibration: the harness's own ceiling ------------------------------------------------
# The same harness (1 worker, on the harness core) against its built-in trivial source (on the
# server core), which sends as fast as the harness reads: the most deliveries/s this harness
# can count, the line every fan-out cell is read against.
rm -f "$WORK"/calibrate-*.json
if ((CALIBRATE)); then
    for proto in sse ws; do
        log "calibration ($proto): 1,000 connections against the harness's built-in source, $CAL_D"
        timeout -k 5 $((${CAL_D%s} + 60)) "$BENCH" calibrate --proto "$proto" --conns 1000 --duration "$CAL_D" \
            --workers 1 --harness-cpu "$HARNESS_CPU" --source-cpu "$SERVER_CPU" --quiet \
            --json "$WORK/calibrate-$proto.json" >"$WORK/calibrate-$proto.txt" 2>&1 ||
            log "calibration ($proto) failed, see $WORK/calibrate-$proto.txt"
    done
fi

log "servers: ${PEER_LIST[*]}; ${#CELLS[@]} cells x $REPS reps; server on cpu $SERVER_CPU, harness on cpu $HARNESS_CPU; work dir $WORK"
n=${#PEER_LIST[@]}
for c in "${CELLS[@]}"; do
    for rep in $(seq "$REPS"); do
        # Rotate the order every repetition so no server always runs first (or last) in a cell.
        for k in $(seq 0 $((n - 1))); do
            run_one "${c%%|*}" "${PEER_LIST[$(((k + rep - 1) % n))]}" "$rep" "${c#*|}"
        done
    done
done

# ---- report ---------------------------------------------------------------------------------
{
    echo "## uringcast and peers, side by side"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo);"
    echo "server pinned to cpu $SERVER_CPU (one core, one worker/thread where it has the choice), harness to cpu $HARNESS_CPU (\`--workers 1\`);"
    echo "median of $REPS run(s) per cell, servers alternating; mode: $( ((QUICK)) && echo quick || echo full) (echo $ECHO_D, fan-out $FANOUT_D, hold $HOLD_D)."
    echo "Command: \`bench/compare.sh $ARGS_GIVEN\` (servers: ${PEERS}); per-run JSON in \`$WORK\`."
    echo
    python3 - "$RUNS" "$WORK" "${PEER_LIST[@]}" <<'PY'
import json, statistics, sys
from collections import defaultdict

runs_path, work, peers = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = defaultdict(list)  # (cell, peer) -> [record]
diverged = []
cells = []
for line in open(runs_path):
    cell, peer, rep, rc, cpu_ns, wall_ns, rss0, peak, sched_ns = line.rstrip("\n").split("\t")
    if cell not in cells:
        cells.append(cell)
    cpu_ns, sched_ns = int(cpu_ns), int(sched_ns)
    rec = {"rc": rc, "cpu_ns": cpu_ns if cpu_ns >= 0 else None, "rss0": int(rss0), "peak": int(peak)}
    # utime+stime counts threads that exited during the run, the live-thread schedstat sum does
    # not; both should agree to a clock tick or two otherwise.
    if cpu_ns > 0 and sched_ns >= 0 and abs(cpu_ns - sched_ns) > max(0.05 * cpu_ns, 30e6):
        diverged.append(f"{cell}.{peer}.r{rep}: utime+stime {cpu_ns / 1e6:.0f} ms, live-thread schedstat {sched_ns / 1e6:.0f} ms")
    try:
        rec["j"] = json.load(open(f"{work}/{cell}.{peer}.r{rep}.json"))
    except (OSError, ValueError):
        rec["j"] = None
    runs[(cell, peer)].append(rec)

def lat(j, q):
    return (j.get("latency_us") or {}).get(q)

# metric name, higher-is-better, unit, function(record) -> value or None
def echo_metrics():
    return [
        ("round trips/s", True, "", lambda r: r["j"]["echoes_per_s"]),
        ("round trips per server-CPU-s", True, "", lambda r: r["j"]["echoes"] / (r["cpu_ns"] / 1e9) if r["cpu_ns"] else None),
        ("server CPU µs per echo", False, "µs", lambda r: r["cpu_ns"] / 1e3 / r["j"]["echoes"] if r["j"]["echoes"] and r["cpu_ns"] is not None else None),
        ("RTT p50 ms", False, "ms", lambda r: lat(r["j"], "p50") / 1e3 if lat(r["j"], "p50") is not None else None),
        ("RTT p99 ms", False, "ms", lambda r: lat(r["j"], "p99") / 1e3 if lat(r["j"], "p99") is not None else None),
    ]

def fanout_metrics():
    return [
        ("deliveries/s", True, "", lambda r: r["j"]["deliveries_per_s"]),
        ("lost (missing+dup+ooo)", False, "", lambda r: r["j"]["missing"] + r["j"]["duplicates"] + r["j"]["out_of_order"]),
        ("deliveries per server-CPU-s", True, "", lambda r: r["j"]["deliveries"] / (r["cpu_ns"] / 1e9) if r["cpu_ns"] else None),
        ("server CPU µs per delivery", False, "µs", lambda r: r["cpu_ns"] / 1e3 / r["j"]["deliveries"] if r["j"]["deliveries"] and r["cpu_ns"] is not None else None),
        ("latency p50 ms", False, "ms", lambda r: lat(r["j"], "p50") / 1e3 if lat(r["j"], "p50") is not None else None),
        ("latency p99 ms", False, "ms", lambda r: lat(r["j"], "p99") / 1e3 if lat(r["j"], "p99") is not None else None),
    ]

def hold_metrics():
    return [
        ("held", True, "", lambda r: r["j"]["connections_held"]),
        ("server peak RSS MiB", False, "MiB", lambda r: r["peak"] / 1024),
        ("server KiB per connection", False, "KiB", lambda r: (r["peak"] - r["rss0"]) / r["j"]["connections_held"] if r["j"]["connections_held"] else None),
    ]

def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if float(v).is_integer() and a < 1e4:
        return str(int(v))
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"

def median_of(recs, f):
    vals = []
    for r in recs:
        if r["j"] is None:
            continue
        try:
            v = f(r)
        except (KeyError, TypeError, ZeroDivisionError):
            v = None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None

def failed(recs):
    bad = [r["rc"] for r in recs if r["rc"] != "0"]
    return f" ⚠{len(bad)}/{len(recs)}" if bad else ""

cal = []
for proto in ("sse", "ws"):
    try:
        c = json.load(open(f"{work}/calibrate-{proto}.json"))["calibration"]
        cal.append(f"{proto.upper()} {fmt(c['deliveries_per_s'])} deliveries/s, "
                   f"{fmt(c['deliveries_per_harness_cpu_s'])} per harness CPU-s")
    except (OSError, ValueError, KeyError, TypeError):
        pass
if cal:
    print("Harness ceiling (`uringcast-bench calibrate --conns 1000 --workers 1`: the harness on its "
          "core against its built-in trivial source on the server core, one message per send): "
          + "; ".join(cal) + ". A fan-out cell near it measured the harness, not the server.\n")

groups = [("echo", "Echo: 1,000 WebSocket connections, 32 B messages (cells ending in -1KiB: 1 KiB)", echo_metrics),
          ("fanout-ws", "Fan-out over WebSocket: 1 topic, HTTP POST publisher, rate ramp (pN = N messages/s)", fanout_metrics),
          ("fanout-sse", "Fan-out over SSE: 1 topic, HTTP POST publisher, rate ramp (pN = N messages/s)", fanout_metrics),
          ("hold", "Hold: 10,000 idle connections", hold_metrics)]
others = [p for p in peers if p != "uringcast"]
best_col = "uringcast" in peers and bool(others)
head = "| cell | metric | " + " | ".join(peers) + (" | best peer (uringcast ÷ it) |" if best_col else " |")
sep = "| --- | --- | " + " | ".join("---:" for _ in peers) + (" | --- |" if best_col else " |")
for prefix, title, metrics in groups:
    gcells = [c for c in cells if c.startswith(prefix)]
    if not gcells:
        continue
    print(f"### {title}\n")
    print(head)
    print(sep)
    for c in gcells:
        for name, higher, _unit, f in metrics():
            base = median_of(runs.get((c, "uringcast"), []), f)
            row = []
            vals = {}
            for p in peers:
                recs = runs.get((c, p), [])
                if not recs:
                    row.append("–")
                    continue
                v = median_of(recs, f)
                if v is not None and p != "uringcast":
                    vals[p] = v
                cell = fmt(v)
                if p != "uringcast" and base is not None and v:
                    cell += f" (×{base / v:.2f})"
                if name == metrics()[0][0]:
                    cell += failed(recs)
                row.append(cell)
            best = ""
            if best_col:
                best = " – |"
                if vals and name != "lost (missing+dup+ooo)":
                    bp = (max if higher else min)(vals, key=vals.get)
                    best = f" {bp} {fmt(vals[bp])}"
                    best += f" (×{base / vals[bp]:.2f}) |" if base is not None and vals[bp] else " |"
            print(f"| {c} | {name} | " + " | ".join(row) + " |" + best)
    print()
print("(×r) = uringcast / peer: above 1 uringcast is ahead on throughput and held; below 1 it is "
      "ahead on latency, CPU per message, memory and loss. ⚠k/n: k of n runs failed the harness's "
      "own criteria (loss, connections not held, timeout) or the server died; their figures still count "
      "in the median. Server CPU is utime+stime of the server process (all its threads, exited ones "
      "included, from /proc/PID/stat) over the harness run, connect phase included; the server is "
      "pinned to one core. Best peer: the best median among the peers for that metric.")
if diverged:
    print("\nRuns where utime+stime and the live-thread schedstat sum differ by over 5 % "
          "(threads that exited during the run, or a server that died):\n")
    for d in diverged:
        print(f"- {d}")
PY
    if [[ -s $SKIPPED ]]; then
        echo
        echo "Not run:"
        sed 's/^/- /' "$SKIPPED"
    fi
} >"$WORK/report.md"
cat "$WORK/report.md"
if [[ -n $OUT && ! $OUT -ef $WORK/report.md ]]; then cp "$WORK/report.md" "$OUT"; fi
