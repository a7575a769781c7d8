# tuning/lib.sh: helpers shared by capacity.sh, storm.sh, cluster.sh and cluster-publish.sh
# (sourced, not run).

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
