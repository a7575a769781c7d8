# tuning/lib.sh: helpers shared by capacity.sh, storm.sh, cluster.sh, cluster-publish.sh and
# idle_memory.sh (sourced, not run).

# Stop a process this script started: TERM, up to 10 s for it to exit, then KILL; reap it.
# A missing or already-gone PID is fine.
kill_pid() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Wait up to 60 s for a `uringcast serve` started with its stdout in OUT_FILE to print its
# "listening on ADDR" line, and print ADDR. Returns 1 (after printing ERR_FILE to stderr) if the
# process PID exits first, 2 on the timeout.
server_addr() {
    local pid="$1" out="$2" err="$3" addr
    for _ in $(seq 1 600); do
        # The shell creates OUT_FILE in the child after the fork: it may not exist yet.
        addr=$(sed -n 's/^uringcast: listening on \([^ ]*\) .*/\1/p' "$out" 2>/dev/null | head -1 || true)
        [[ -n "$addr" ]] && { echo "$addr"; return 0; }
        kill -0 "$pid" 2>/dev/null || { cat "$err" >&2; return 1; }
        sleep 0.1
    done
    return 2
}

# A free TCP port on 127.0.0.1 (bound and released: another process may take it first).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
