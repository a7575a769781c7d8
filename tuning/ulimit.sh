#!/usr/bin/env bash
# uringcast file descriptor limit (RLIMIT_NOFILE): check it, raise it where allowed.
#
#   tuning/ulimit.sh check [--nofile N] [--connections C]
#   tuning/ulimit.sh apply [--nofile N] [--connections C] [--pid PID | -- COMMAND ARGS...]
#                          [--write-limits-d] [--write-systemd-dropin]
#
# --nofile N       wanted limit (default 1048576, the systemd unit's LimitNOFILE)
# --connections C  connections to plan rings for (default 1000000)
# --pid PID        raise the limit of a running process (e.g. your shell: --pid $$)
# -- COMMAND       raise the limit, then exec COMMAND with it
# --write-limits-d         write $URINGCAST_LIMITS_D_FILE (PAM logins: ssh, su, login)
# --write-systemd-dropin   write $URINGCAST_SYSTEMD_DROPIN (LimitNOFILE for uringcast.service)
#
# A limit set by a script dies with the script, so apply without --pid or a command only shows
# what would be possible. Raising the HARD limit needs CAP_SYS_RESOURCE; without it the soft limit
# can still go up to the hard one, and uringcast still scales past it through io_uring direct
# descriptors (explained in the output and in tuning/README.md).
#
# Exit status: check: 0 ready (possibly via direct descriptors), 1 a fixable shortfall is named.
# apply: 0 the wanted limit was reached, 1 it was not (reason printed), 2 usage error.
set -euo pipefail

LIMITS_D_FILE="${URINGCAST_LIMITS_D_FILE:-/etc/security/limits.d/uringcast.conf}"
SYSTEMD_DROPIN="${URINGCAST_SYSTEMD_DROPIN:-/etc/systemd/system/uringcast.service.d/10-limits.conf}"
# io_uring refuses registered file tables larger than this (IORING_MAX_FIXED_FILES, 1 << 20).
IORING_MAX_FIXED_FILES=1048576
CAP_SYS_RESOURCE_BIT=24

NOFILE=1048576
CONNECTIONS=1000000
TARGET_PID=""
WRITE_LIMITS_D=0
WRITE_DROPIN=0
COMMAND=()

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "ulimit.sh: $*" >&2
    exit 2
}

ACTION="${1:-}"
[[ -n "$ACTION" ]] || usage
shift
while (($#)); do
    case "$1" in
    --nofile) NOFILE="${2:?--nofile needs a number}" && shift 2 ;;
    --nofile=*) NOFILE="${1#*=}" && shift ;;
    --connections) CONNECTIONS="${2:?--connections needs a number}" && shift 2 ;;
    --connections=*) CONNECTIONS="${1#*=}" && shift ;;
    --pid) TARGET_PID="${2:?--pid needs a process id}" && shift 2 ;;
    --pid=*) TARGET_PID="${1#*=}" && shift ;;
    --write-limits-d) WRITE_LIMITS_D=1 && shift ;;
    --write-systemd-dropin) WRITE_DROPIN=1 && shift ;;
    --)
        shift
        COMMAND=("$@")
        break
        ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done
[[ "$NOFILE" =~ ^[1-9][0-9]{0,9}$ ]] || die "--nofile must be a positive number, got '$NOFILE'"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]{0,8}$ ]] || die "--connections must be a positive number, got '$CONNECTIONS'"
[[ -z "$TARGET_PID" || "$TARGET_PID" =~ ^[1-9][0-9]*$ ]] || die "--pid must be a process id"
[[ -z "$TARGET_PID" || ${#COMMAND[@]} -eq 0 ]] || die "use --pid or -- COMMAND, not both"
[[ "$ACTION" == apply || (-z "$TARGET_PID" && ${#COMMAND[@]} -eq 0 && $WRITE_LIMITS_D -eq 0 && $WRITE_DROPIN -eq 0) ]] ||
    die "--pid, -- COMMAND and --write-* belong to apply"

if [[ -n "$TARGET_PID" ]]; then
    # Limits of the process to change; the capability that matters is still ours (we call
    # prlimit), and raising another process's hard limit needs the same CAP_SYS_RESOURCE.
    read -r SOFT HARD < <(prlimit --pid "$TARGET_PID" --nofile --output SOFT,HARD --noheadings) ||
        die "cannot read the limits of pid $TARGET_PID"
else
    SOFT=$(ulimit -Sn)
    HARD=$(ulimit -Hn)
fi
NR_OPEN=$(cat /proc/sys/fs/nr_open)
CAP_EFF_HEX=$(awk '/^CapEff:/ {print $2}' /proc/$$/status)
HAS_CAP=$(((16#$CAP_EFF_HEX >> CAP_SYS_RESOURCE_BIT) & 1))
[[ "$HARD" != unlimited ]] || HARD=$NR_OPEN
[[ "$SOFT" != unlimited ]] || SOFT=$HARD

# Can the hard limit actually go up? The capability bit says so; a try in a throwaway subshell
# proves it (some LSMs deny setrlimit even with the capability).
can_raise_hard() {
    ((HAS_CAP)) && ((HARD < NR_OPEN)) && (ulimit -Hn $((HARD + 1))) 2>/dev/null
}

min() { echo $(($1 < $2 ? $1 : $2)); }
ceil_div() { echo $((($1 + $2 - 1) / $2)); }

# Direct-descriptor capacity: sockets accepted into a ring's registered file table never enter
# the process fd table, so RLIMIT_NOFILE does not count them. The kernel caps each ring's table
# at RLIMIT_NOFILE (soft, checked at IORING_REGISTER_FILES time) and at IORING_MAX_FIXED_FILES.
explain_direct_descriptors() {
    local soft="$1" table rings
    # Table slots are not fds: a full table of $soft entries still leaves the fd table free for
    # listeners, ring fds and logs.
    table=$(min "$soft" $IORING_MAX_FIXED_FILES)
    rings=$(ceil_div "$CONNECTIONS" "$table")
    cat <<EOF
  Direct-descriptor path: uringcast accepts sockets straight into io_uring registered file tables
  (multishot accept with IORING_FILE_INDEX_ALLOC, Linux 5.19+). Such sockets hold no process fd,
  so RLIMIT_NOFILE does not limit how many there are (fs.file-max still does); it only caps
  each ring's table size
  (io_uring checks a table against RLIMIT_NOFILE and against $IORING_MAX_FIXED_FILES).
  capacity = rings x table size. With a soft limit of $soft:
  table <= $table entries per ring, so $CONNECTIONS connections need >= $rings rings in total
  (spread over the workers, e.g. $(ceil_div "$rings" "$(nproc)") per worker on $(nproc) cores).
EOF
}

do_check() {
    local status=0
    echo "RLIMIT_NOFILE of this process: soft $SOFT, hard $HARD; fs.nr_open $NR_OPEN;" \
        "CAP_SYS_RESOURCE: $( ((HAS_CAP)) && echo yes || echo no); wanted $NOFILE"
    if ((NOFILE > NR_OPEN)); then
        echo "NOT MET: fs.nr_open $NR_OPEN < wanted $NOFILE: no process can get that limit." \
            "Fix: sudo tuning/sysctl.sh apply (raises fs.nr_open)"
        status=1
    fi
    if ((SOFT >= NOFILE)); then
        echo "ok: soft limit $SOFT >= $NOFILE"
        return $status
    fi
    if ((SOFT < HARD)); then
        echo "NOT MET: soft limit $SOFT is below the hard limit $HARD. Fix: ulimit -Sn $(min "$NOFILE" "$HARD")," \
            "or tuning/ulimit.sh apply --pid \$\$, or LimitNOFILE in the systemd unit"
        status=1
    fi
    if ((HARD < NOFILE)); then
        if can_raise_hard; then
            echo "NOT MET: hard limit $HARD < $NOFILE, and this process may raise it (CAP_SYS_RESOURCE)." \
                "Fix: tuning/ulimit.sh apply --pid <pid> or -- <command>; persist with --write-systemd-dropin"
            status=1
        else
            echo "note: the hard limit $HARD cannot be raised here: this process lacks CAP_SYS_RESOURCE" \
                "(CapEff $CAP_EFF_HEX, bit $CAP_SYS_RESOURCE_BIT clear)$( ((HARD >= NR_OPEN)) && echo ', or it is already at fs.nr_open')."
            echo "  This is not an error for uringcast:"
            explain_direct_descriptors "$(min "$NOFILE" "$HARD")"
        fi
    fi
    return $status
}

# Writes $2 to file $1 unless it already has exactly that content.
write_file() {
    local path="$1" content="$2"
    if [[ -f "$path" && "$(cat "$path")" == "$content" ]]; then
        echo "$path: unchanged (already written)"
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path.tmp.$$"
    mv "$path.tmp.$$" "$path"
    echo "$path: written"
}

do_apply() {
    local new_hard new_soft reached=1
    new_hard=$HARD
    if ((NOFILE > HARD)); then
        if can_raise_hard; then
            new_hard=$(min "$NOFILE" "$NR_OPEN")
        else
            echo "hard limit $HARD cannot be raised: no CAP_SYS_RESOURCE (CapEff $CAP_EFF_HEX)" \
                "$( ((HARD >= NR_OPEN)) && echo "or already at fs.nr_open $NR_OPEN")"
        fi
    fi
    ((NOFILE <= NR_OPEN)) || echo "fs.nr_open $NR_OPEN < $NOFILE: raise it first (sudo tuning/sysctl.sh apply)"
    new_soft=$(min "$NOFILE" "$new_hard")
    # Never lower a limit that is already more generous than wanted.
    ((new_soft >= SOFT)) || new_soft=$SOFT
    ((new_soft >= NOFILE)) || reached=0
    echo "RLIMIT_NOFILE${TARGET_PID:+ of pid $TARGET_PID}: soft $SOFT -> $new_soft, hard $HARD -> $new_hard (wanted $NOFILE)"
    ((reached)) || explain_direct_descriptors "$new_soft"

    if ((WRITE_LIMITS_D)); then
        if ((NOFILE > NR_OPEN)); then
            # pam_limits cannot set a hard limit above fs.nr_open; a bad file here breaks logins.
            echo "$LIMITS_D_FILE: NOT written: $NOFILE > fs.nr_open $NR_OPEN would make PAM sessions fail"
            reached=0
        else
            write_file "$LIMITS_D_FILE" "# Written by uringcast tuning/ulimit.sh: fd limit for PAM sessions (ssh, login, su).
# Does not apply to systemd services; uringcast.service sets LimitNOFILE itself.
# '*' does not match root in pam_limits, hence the explicit root lines.
*    soft nofile $NOFILE
*    hard nofile $NOFILE
root soft nofile $NOFILE
root hard nofile $NOFILE"
        fi
    fi
    if ((WRITE_DROPIN)); then
        write_file "$SYSTEMD_DROPIN" "# Written by uringcast tuning/ulimit.sh: fd limit of uringcast.service.
# Direct descriptors are capped per ring by this limit too (see tuning/README.md).
[Service]
LimitNOFILE=$NOFILE"
        if [[ "$(cat /proc/1/comm 2>/dev/null)" == systemd ]]; then
            echo "  run: systemctl daemon-reload && systemctl restart uringcast"
        else
            echo "  note: PID 1 is not systemd here; the drop-in takes effect on a systemd host"
        fi
    fi

    if [[ -n "$TARGET_PID" ]]; then
        prlimit --pid "$TARGET_PID" --nofile="$new_soft:$new_hard"
        echo "pid $TARGET_PID now: $(prlimit --pid "$TARGET_PID" --nofile --output SOFT,HARD --noheadings)"
    elif ((${#COMMAND[@]})); then
        ((new_hard == HARD)) || ulimit -Hn "$new_hard"
        ulimit -Sn "$new_soft"
        echo "exec ${COMMAND[*]} with RLIMIT_NOFILE $new_soft:$new_hard"
        exec "${COMMAND[@]}"
    else
        echo "no --pid and no command: nothing else changed (a limit set here would end with this" \
            "script). Use --pid \$\$, -- <command>, or --write-systemd-dropin / --write-limits-d."
    fi
    ((reached)) || {
        echo "apply: wanted $NOFILE not reached (reasons above)"
        return 1
    }
}

case "$ACTION" in
check) do_check ;;
apply) do_apply ;;
*) die "unknown action '$ACTION' (check | apply)" ;;
esac
