#!/usr/bin/env bash
# uringcast kernel tuning: size sysctls for N concurrent TCP connections on this box.
#
#   tuning/sysctl.sh check  [--connections N] [--ends 1|2]   current vs recommended; exit 1 if short
#   tuning/sysctl.sh apply  [--connections N] [--ends 1|2]   raise what is short, save old values
#   tuning/sysctl.sh revert                                  restore exactly what apply saved
#   tuning/sysctl.sh list                                    print the keys this script manages
#
# N defaults to 1,000,000. --ends says how many socket ends per connection live on THIS box:
# 2 (default) when the load generator runs here too (the capacity experiment), 1 for a server
# alone. Values are runtime only (lost at reboot); see tuning/README.md to persist them.
#
# Idempotent: apply only moves a value that misses its recommendation, never lowers a value that
# is already more generous, and saves each key's ORIGINAL value once (a second apply does not
# overwrite the saved originals with tuned values). revert restores the saved values byte for
# byte (whitespace normalised) and then removes the state file.
#
# State file: $URINGCAST_SYSCTL_STATE, default /var/lib/uringcast-tuning/sysctl.saved.
# Exit status: 0 all good; 1 something is below its recommendation (check) or could not be
# changed/restored (apply/revert), each named with its reason; 2 usage error.
set -euo pipefail

STATE_FILE="${URINGCAST_SYSCTL_STATE:-/var/lib/uringcast-tuning/sysctl.saved}"
CONNECTIONS=1000000
ENDS=2
# Kernel memory for one idle TCP socket end with its armed multishot recv (TCP slab,
# sock_inode_cache, dentry, filp, io_uring request): 4.4-4.7 KB as `Slab:` growth / TCP sockets
# growth at 200k-400k connections, measured by tuning/capacity.sh (docs/capacity.md); the same
# figure as KERNEL_BYTES_PER_SOCKET_END in src/server/doctor.rs. Change both together.
SOCKET_END_BYTES=4700
# Userspace memory per idle connection end: uringcast's RSS slope between 100k and 200k idle
# connections, half SSE half WebSocket (tuning/idle_memory.sh, docs/capacity.md "Memory per idle
# connection"), rounded up: the same figure as SERVER_BYTES_PER_CONNECTION in
# src/server/doctor.rs, whose unit test reads this line. With --ends 2 the other end is a
# co-located uringcast-bench, which costs more (about 540 B); the reserve below covers it.
APP_BYTES_PER_CONNECTION=320

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "sysctl.sh: $*" >&2
    exit 2
}

ACTION="${1:-}"
[[ -n "$ACTION" ]] || usage
shift
while (($#)); do
    case "$1" in
    --connections)
        [[ $# -ge 2 ]] || die "--connections needs a number"
        CONNECTIONS="$2"
        shift 2
        ;;
    --connections=*)
        CONNECTIONS="${1#*=}"
        shift
        ;;
    --ends)
        [[ $# -ge 2 ]] || die "--ends needs 1 or 2"
        ENDS="$2"
        shift 2
        ;;
    --ends=*)
        ENDS="${1#*=}"
        shift
        ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ "$CONNECTIONS" =~ ^[1-9][0-9]{0,8}$ ]] || die "--connections must be 1..999999999, got '$CONNECTIONS'"
[[ "$ENDS" == 1 || "$ENDS" == 2 ]] || die "--ends must be 1 or 2, got '$ENDS'"

N=$CONNECTIONS
MEM_TOTAL_KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
PAGE_BYTES=$(getconf PAGESIZE)

# ---------------------------------------------------------------------------------------------
# Memory budget for tcp_mem. Socket structures live in slab and are NOT counted by tcp_mem; what
# tcp_mem limits is queued data (send and receive buffers). So: RAM minus socket structures,
# minus the application, minus a reserve for the OS and page cache = what TCP buffers may use.
SOCKETS_KB=$((ENDS * N * SOCKET_END_BYTES / 1024))
APP_KB=$((ENDS * N * APP_BYTES_PER_CONNECTION / 1024))
RESERVE_KB=$((MEM_TOTAL_KB / 10 > 1048576 ? MEM_TOTAL_KB / 10 : 1048576))
BUFFER_KB=$((MEM_TOTAL_KB - SOCKETS_KB - APP_KB - RESERVE_KB))
MEMORY_WARNING=""
if ((BUFFER_KB < MEM_TOTAL_KB / 16)); then
    MEMORY_WARNING="WARNING: $N connections x $ENDS ends need ~$(((SOCKETS_KB + APP_KB) / 1048576)) GiB of socket+app memory; this box has $((MEM_TOTAL_KB / 1048576)) GiB. TCP buffers get only 1/16 of RAM; expect memory pressure."
    BUFFER_KB=$((MEM_TOTAL_KB / 16))
fi
# Never let TCP buffers alone claim more than half of RAM, however few the connections: past
# tcp_mem[2] the kernel drops data instead of the OOM killer picking a process.
((BUFFER_KB <= MEM_TOTAL_KB / 2)) || BUFFER_KB=$((MEM_TOTAL_KB / 2))
TCP_MEM_HIGH=$((BUFFER_KB * 1024 / PAGE_BYTES))
TCP_MEM_PRESSURE=$((TCP_MEM_HIGH * 3 / 4))
TCP_MEM_LOW=$((TCP_MEM_HIGH / 2))

# Socket hash buckets for ENDS x N sockets: the kernel wants a power of two.
EHASH=1
while ((EHASH < ENDS * N)); do EHASH=$((EHASH * 2)); done

round_up_1024() { echo $((($1 + 1023) / 1024 * 1024)); }
NR_OPEN=$(round_up_1024 $((N + 65536)))
((NR_OPEN >= 1048576)) || NR_OPEN=1048576

# ---------------------------------------------------------------------------------------------
# The plan: key | per-element rule | recommended | class | why
#   rules: ge (at least), le (at most), eq (exactly), any (left alone); one per element.
#   class: required | optional (skipped when the key is missing) | policy (checked, never written)
#          | advice (a cost, not a limit: reported, never written, never fails check or apply)
plan() {
    cat <<EOF
fs.file-max|ge|$((ENDS * N + 131072))|required|every socket is a struct file, direct descriptors included: $ENDS x N plus 128k for everything else on the box
fs.nr_open|ge|$NR_OPEN|required|ceiling for RLIMIT_NOFILE: LimitNOFILE=1048576 in uringcast.service and the per-ring registered file table (sized by RLIMIT_NOFILE) need it
net.core.somaxconn|ge|65535|required|accept queue per listener: a connect storm of 100k+ clients must not overflow it before multishot accept drains it
net.ipv4.tcp_max_syn_backlog|ge|65535|required|half-open queue during connect storms (syncookies take over beyond it, losing TCP options)
net.core.netdev_max_backlog|ge|16384|required|per-CPU input queue; loopback traffic passes through it too, and 1000 drops packets in connect storms
net.ipv4.ip_local_port_range|le ge|1024 65535|required|the load generator needs ~64k ephemeral ports per (source IP, server IP:port); reserve the server port with ip_local_reserved_ports
net.ipv4.tcp_tw_reuse|eq|1|required|let the load generator reuse TIME_WAIT ports for new outgoing connections on any interface, not only loopback (2)
net.ipv4.tcp_fin_timeout|le|15|required|orphaned FIN_WAIT2 sockets after a mass disconnect hold memory; 60 s is long at 1M sockets
net.ipv4.tcp_max_orphans|ge|$N|required|closing N connections at once must not hit "too many orphaned sockets" and turn into resets
net.ipv4.tcp_max_tw_buckets|ge|$N|required|the side that closes first keeps TIME_WAIT; beyond this the kernel destroys them early and logs
net.ipv4.tcp_syncookies|ge|1|required|keep accepting when the SYN queue overflows during a connect storm
net.ipv4.tcp_slow_start_after_idle|eq|0|required|SSE/WebSocket streams idle between pushes; restarting slow start after each idle period adds round trips to every push
net.ipv4.tcp_rmem|le le any|4096 16384 -|required|small initial receive buffer: clients send little (requests, pings) and N idle sockets must not reserve 128 KB windows; max untouched so busy sockets still autotune
net.ipv4.tcp_wmem|le le any|4096 16384 -|required|small initial send buffer: unsent fan-out data stays in uringcast's shared buffers (encoded once) instead of being copied per socket into the kernel; max untouched
net.ipv4.tcp_mem|ge ge ge|$TCP_MEM_LOW $TCP_MEM_PRESSURE $TCP_MEM_HIGH|required|pages of TCP buffer memory for all sockets: RAM $((MEM_TOTAL_KB / 1024)) MiB minus ~$((SOCKETS_KB / 1024)) MiB of socket structs, $((APP_KB / 1024)) MiB app, $((RESERVE_KB / 1024)) MiB reserve, at most half of RAM; low=1/2, pressure=3/4 of that
net.netfilter.nf_conntrack_max|ge|$((N + 65536))|optional|conntrack is loaded: every connection (one entry per flow) is tracked, and a full table drops new SYNs; or exempt the port with a raw-table NOTRACK rule
net.ipv4.tcp_ehash_entries|ge|$EHASH|advice|every TCP segment looks its socket up in this hash; past one socket per bucket the chains grow (1M held: a quarter of the server's fan-out CPU at 262144 buckets). Fixed at boot: thash_entries=$EHASH on the kernel command line, or run uringcast in a network namespace (container) created after sysctl -w net.ipv4.tcp_child_ehash_entries=$EHASH
vm.max_map_count|ge|262144|required|rings, provided-buffer rings and allocator segments are mappings; at 1M connections fragmentation can exceed 65530 and mmap fails with ENOMEM
kernel.io_uring_disabled|eq|0|policy|uringcast needs io_uring; 1 or 2 make io_uring_setup fail with EPERM. Security policy: change it deliberately, this script will not
EOF
}

# ---------------------------------------------------------------------------------------------
key_path() { echo "/proc/sys/${1//.//}"; }

# Current value with whitespace normalised to single spaces.
read_value() { awk '{$1=$1; print}' "$(key_path "$1")"; }

# Rule check over all elements. Prints nothing; returns 0 if every element meets its rule.
meets() {
    local -a rules cur rec
    read -r -a rules <<<"$1"
    read -r -a cur <<<"$2"
    read -r -a rec <<<"$3"
    local i
    for i in "${!rules[@]}"; do
        case "${rules[$i]}" in
        any) ;;
        ge) ((cur[i] >= rec[i])) || return 1 ;;
        le) ((cur[i] <= rec[i])) || return 1 ;;
        eq) ((cur[i] == rec[i])) || return 1 ;;
        esac
    done
}

# The value apply would write: each element kept if it meets its rule, else the recommendation.
target_value() {
    local -a rules cur rec out=()
    read -r -a rules <<<"$1"
    read -r -a cur <<<"$2"
    read -r -a rec <<<"$3"
    local i
    for i in "${!rules[@]}"; do
        if [[ "${rules[$i]}" == any ]] || meets "${rules[$i]}" "${cur[$i]}" "${rec[$i]}"; then
            out+=("${cur[$i]}")
        else
            out+=("${rec[$i]}")
        fi
    done
    echo "${out[*]}"
}

# Human form of a recommendation: ">= 65535", "<= 15", "1024..65535" style per element.
describe() {
    local -a rules rec out=()
    read -r -a rules <<<"$1"
    read -r -a rec <<<"$2"
    local i
    for i in "${!rules[@]}"; do
        case "${rules[$i]}" in
        any) out+=("*") ;;
        ge) out+=(">=${rec[$i]}") ;;
        le) out+=("<=${rec[$i]}") ;;
        eq) out+=("=${rec[$i]}") ;;
        esac
    done
    echo "${out[*]}"
}

# Why a write failed, from the error text (strerror of the write) and the file's state.
failure_reason() {
    local key="$1" err="${2,,}" path
    path="$(key_path "$key")"
    if [[ ! -e "$path" ]]; then
        echo "missing key: this kernel lacks it, its module is not loaded, or it is host-wide" \
            "and hidden in this network namespace (set it on the host)"
    elif [[ "$err" == *"read-only file system"* ]]; then
        echo "read-only in this namespace: /proc/sys is mounted read-only here (container?)"
    elif [[ "$err" == *"permission denied"* || "$err" == *"operation not permitted"* ]]; then
        if ((EUID != 0)); then
            echo "permission: run as root"
        else
            echo "read-only in this namespace: the key belongs to the initial user/network" \
                "namespace, or CAP_SYS_ADMIN/CAP_NET_ADMIN is missing"
        fi
    elif [[ "$err" == *"invalid argument"* ]]; then
        echo "kernel rejected the value (outside the range it accepts)"
    else
        echo "write failed: ${2:-unknown error}"
    fi
}

# Writes key=value straight to /proc/sys (so the error is the kernel's errno, which sysctl(8)
# would blur into "permission denied") and verifies the read-back. On failure prints the
# reason and returns 1.
write_value() {
    local key="$1" value="$2" err after
    if ! err="$({ printf '%s\n' "$value" >"$(key_path "$key")"; } 2>&1)"; then
        failure_reason "$key" "$err"
        return 1
    fi
    after="$(read_value "$key")"
    if [[ "$after" != "$value" ]]; then
        echo "kernel stored '$after' instead of '$value' (clamped or rejected silently)"
        return 1
    fi
}

is_saved() {
    [[ -f "$STATE_FILE" ]] && grep -q "^$1=" "$STATE_FILE"
}

header() {
    echo "uringcast sysctl $ACTION: sizing for $N connections x $ENDS socket ends on this box," \
        "MemTotal $((MEM_TOTAL_KB / 1024)) MiB, page $PAGE_BYTES B"
    echo "  kernel socket memory estimate $((SOCKETS_KB / 1024)) MiB ($SOCKET_END_BYTES B per end)," \
        "TCP buffer budget $((BUFFER_KB / 1024)) MiB"
    [[ -z "$MEMORY_WARNING" ]] || echo "  $MEMORY_WARNING"
}

do_check() {
    header
    local short=0 key rules rec class why cur
    printf '%-36s %-28s %-34s %s\n' KEY CURRENT RECOMMENDED STATUS
    while IFS='|' read -r key rules rec class why; do
        if [[ ! -e "$(key_path "$key")" ]]; then
            if [[ "$class" == optional || "$class" == advice ]]; then
                printf '%-36s %-28s %-34s %s\n' "$key" "-" "$(describe "$rules" "$rec")" "skip (not present: nothing to size)"
            else
                printf '%-36s %-28s %-34s %s\n' "$key" "-" "$(describe "$rules" "$rec")" "MISSING: kernel lacks it, or host-wide and hidden in this network namespace (set it on the host)"
                short=1
            fi
            continue
        fi
        cur="$(read_value "$key")"
        [[ "$class" != advice ]] || cur="${cur#-}" # negative: a namespace sharing the host's hash
        if meets "$rules" "$cur" "$rec"; then
            printf '%-36s %-28s %-34s %s\n' "$key" "$cur" "$(describe "$rules" "$rec")" ok
        elif [[ "$class" == advice ]]; then
            printf '%-36s %-28s %-34s %s\n' "$key" "$cur" "$(describe "$rules" "$rec")" "ADVICE: $why"
        else
            printf '%-36s %-28s %-34s %s\n' "$key" "$cur" "$(describe "$rules" "$rec")" "NOT MET: $why"
            printf '%-36s fix: sysctl -w %s="%s"\n' "" "$key" "$(target_value "$rules" "$cur" "$rec")"
            short=1
        fi
    done < <(plan)
    if ((short)); then
        echo "FIX: run 'sudo tuning/sysctl.sh apply --connections $N --ends $ENDS' (or the sysctl -w lines above)"
        return 1
    fi
    echo "all values meet the recommendations for $N connections"
}

do_apply() {
    header
    local state_dir failed=0 key rules rec class why cur want reason
    state_dir="$(dirname "$STATE_FILE")"
    # Never change a value without having saved the original first.
    mkdir -p "$state_dir" || {
        echo "cannot create $state_dir for the state file; nothing changed" >&2
        return 1
    }
    touch "$STATE_FILE" || {
        echo "cannot write $STATE_FILE; nothing changed" >&2
        return 1
    }
    echo "state file: $STATE_FILE"
    while IFS='|' read -r key rules rec class why; do
        if [[ ! -e "$(key_path "$key")" ]]; then
            if [[ "$class" == optional || "$class" == advice ]]; then
                echo "$key: skipped, not present (nothing to size)"
            else
                echo "$key: NOT CHANGED: $(failure_reason "$key" "")"
                failed=1
            fi
            continue
        fi
        cur="$(read_value "$key")"
        if [[ "$class" == advice ]]; then
            cur="${cur#-}"
            meets "$rules" "$cur" "$rec" || echo "$key: $cur NOT CHANGED (advice only): $why"
            continue
        fi
        want="$(target_value "$rules" "$cur" "$rec")"
        if [[ "$want" == "$cur" ]]; then
            echo "$key: $cur (unchanged, meets $(describe "$rules" "$rec"))"
            continue
        fi
        if [[ "$class" == policy ]]; then
            echo "$key: $cur NOT CHANGED: security policy, left to the administrator ($why)"
            failed=1
            continue
        fi
        # Save the original once: after a partial apply or a second run, the saved value is
        # still the one found before uringcast tuning touched the box.
        is_saved "$key" || printf '%s=%s\n' "$key" "$cur" >>"$STATE_FILE"
        if reason="$(write_value "$key" "$want")"; then
            echo "$key: $cur -> $want   # $why"
        else
            echo "$key: $cur NOT CHANGED to $want: $reason"
            failed=1
        fi
    done < <(plan)
    if ((failed)); then
        echo "apply: some values could not be changed (reasons above)"
        return 1
    fi
    echo "apply: done; 'tuning/sysctl.sh revert' restores the saved values"
}

do_revert() {
    if [[ ! -s "$STATE_FILE" ]]; then
        echo "revert: no saved values in $STATE_FILE; nothing to do"
        rm -f "$STATE_FILE"
        return 0
    fi
    echo "revert: restoring values saved in $STATE_FILE"
    local failed=0 key old cur reason
    while IFS='=' read -r key old; do
        [[ -n "$key" ]] || continue
        if [[ ! -e "$(key_path "$key")" ]]; then
            echo "$key: NOT RESTORED to $old: $(failure_reason "$key" "")"
            failed=1
            continue
        fi
        cur="$(read_value "$key")"
        if [[ "$cur" == "$old" ]]; then
            echo "$key: $cur (already the saved value)"
        elif reason="$(write_value "$key" "$old")"; then
            echo "$key: $cur -> $old"
        else
            echo "$key: $cur NOT RESTORED to $old: $reason"
            failed=1
        fi
    done <"$STATE_FILE"
    if ((failed)); then
        echo "revert: some values were not restored; state file kept at $STATE_FILE"
        return 1
    fi
    rm -f "$STATE_FILE"
    echo "revert: done; state file removed"
}

case "$ACTION" in
check) do_check ;;
apply) do_apply ;;
revert) do_revert ;;
list) plan | cut -d'|' -f1 ;;
*) die "unknown action '$ACTION' (check | apply | revert | list)" ;;
esac
