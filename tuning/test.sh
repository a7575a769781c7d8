#!/usr/bin/env bash
# Self-test of tuning/ for CI: exits non-zero on the first failure, naming it.
#
#   tuning/test.sh
#
# Always: syntax (and shellcheck when installed), usage errors exit 2, `sysctl.sh check` and
# `ulimit.sh check` run and exit 0 or 1 (1 = this box is not tuned, which is a finding, not a
# script failure), ulimit.sh raises a soft limit for a command and detects a low soft limit.
# When root with a writable /proc/sys (and URINGCAST_TEST_APPLY is not 0): apply with a temporary
# state file, check (must pass if apply succeeded), apply again (must change nothing), revert,
# and compare every managed key with the snapshot taken before: the box is left as found. An EXIT
# trap reverts if anything in between fails.
#
# URINGCAST_TEST_STRICT=1 additionally requires both checks to pass (a tuned production box).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SYSCTL_SH="$HERE/sysctl.sh"
ULIMIT_SH="$HERE/ulimit.sh"
STRICT="${URINGCAST_TEST_STRICT:-0}"
TMP="$(mktemp -d)"
export URINGCAST_SYSCTL_STATE="$TMP/sysctl.saved"
PASSED=0

cleanup() {
    if [[ -s "$URINGCAST_SYSCTL_STATE" ]]; then
        echo "test.sh: reverting leftover tuning from $URINGCAST_SYSCTL_STATE" >&2
        "$SYSCTL_SH" revert >&2 || echo "test.sh: REVERT FAILED, saved values in $URINGCAST_SYSCTL_STATE" >&2
    fi
    [[ -s "$URINGCAST_SYSCTL_STATE" ]] || rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "test.sh: FAIL: $*" >&2
    exit 1
}
pass() {
    echo "test.sh: ok: $*"
    PASSED=$((PASSED + 1))
}

# Runs a command, stores its exit status in RC and its output in OUT, never aborting.
run() {
    RC=0
    OUT="$("$@" 2>&1)" || RC=$?
}

snapshot() {
    local key
    for key in $("$SYSCTL_SH" list); do
        printf '%s=%s\n' "$key" "$(sysctl -n "$key" 2>/dev/null | awk '{$1=$1; print}' || echo MISSING)"
    done
}

# --- static -----------------------------------------------------------------------------------
for script in "$SYSCTL_SH" "$ULIMIT_SH" "$HERE/test.sh"; do
    bash -n "$script" || fail "syntax error in $script"
done
if command -v shellcheck >/dev/null; then
    shellcheck "$SYSCTL_SH" "$ULIMIT_SH" "$HERE/test.sh" || fail "shellcheck"
    pass "shellcheck"
else
    echo "test.sh: shellcheck not installed, skipped"
fi
if command -v systemd-analyze >/dev/null; then
    # Unknown directives or bad values in the unit show up as warnings here.
    run systemd-analyze verify --man=no "$HERE/uringcast.service"
    if grep -qiE "unknown|invalid|failed to parse" <<<"$OUT"; then
        fail "systemd-analyze verify uringcast.service: $OUT"
    fi
    pass "uringcast.service parses (systemd-analyze verify)"
fi

# --- usage errors -----------------------------------------------------------------------------
run "$SYSCTL_SH" bogus
((RC == 2)) || fail "sysctl.sh bogus exited $RC, want 2"
run "$SYSCTL_SH" check --connections many
((RC == 2)) || fail "sysctl.sh --connections many exited $RC, want 2"
run "$ULIMIT_SH" check --pid 1
((RC == 2)) || fail "ulimit.sh check --pid exited $RC, want 2"
pass "usage errors exit 2"

# --- sysctl check -----------------------------------------------------------------------------
run "$SYSCTL_SH" check
FIRST_CHECK_RC=$RC
echo "$OUT"
((RC == 0 || RC == 1)) || fail "sysctl.sh check exited $RC"
((RC == 0)) || grep -q "^FIX:" <<<"$OUT" || fail "sysctl.sh check failed without naming the fix"
((STRICT == 0 || RC == 0)) || fail "strict: sysctl values below recommendations"
pass "sysctl.sh check (exit $RC)"

# --- sysctl apply / check / revert --------------------------------------------------------------
if ((EUID == 0)) && [[ -w /proc/sys/net/core/somaxconn ]] && [[ "${URINGCAST_TEST_APPLY:-1}" != 0 ]]; then
    BEFORE="$(snapshot)"
    run "$SYSCTL_SH" apply
    APPLY_RC=$RC
    echo "$OUT"
    ((RC == 0 || RC == 1)) || fail "sysctl.sh apply exited $RC"
    if ((FIRST_CHECK_RC == 1 && APPLY_RC == 0)) && [[ ! -s "$URINGCAST_SYSCTL_STATE" ]]; then
        fail "apply changed and saved nothing although check found values to change"
    fi
    run "$SYSCTL_SH" check
    echo "$OUT"
    ((APPLY_RC != 0 || RC == 0)) || fail "check after a successful apply exited $RC"
    SAVED="$(cat "$URINGCAST_SYSCTL_STATE" 2>/dev/null || true)"
    run "$SYSCTL_SH" apply
    grep -q -- " -> " <<<"$OUT" && fail "second apply changed values: $OUT"
    [[ "$(cat "$URINGCAST_SYSCTL_STATE" 2>/dev/null || true)" == "$SAVED" ]] ||
        fail "second apply rewrote the saved originals"
    pass "apply is idempotent"
    run "$SYSCTL_SH" revert
    echo "$OUT"
    ((RC == 0)) || fail "revert exited $RC"
    [[ ! -e "$URINGCAST_SYSCTL_STATE" ]] || fail "revert left the state file"
    AFTER="$(snapshot)"
    [[ "$AFTER" == "$BEFORE" ]] || fail "revert did not restore: $(diff <(echo "$BEFORE") <(echo "$AFTER"))"
    run "$SYSCTL_SH" check
    ((RC == FIRST_CHECK_RC)) || fail "check after revert exited $RC, before apply $FIRST_CHECK_RC"
    pass "apply -> check -> revert restored every key exactly (apply exit $APPLY_RC)"
else
    echo "test.sh: apply/revert skipped (not root, /proc/sys read-only, or URINGCAST_TEST_APPLY=0)"
fi

# --- ulimit -----------------------------------------------------------------------------------
run "$ULIMIT_SH" check
echo "$OUT"
((RC == 0 || RC == 1)) || fail "ulimit.sh check exited $RC"
((STRICT == 0 || RC == 0)) || fail "strict: RLIMIT_NOFILE shortfall"
pass "ulimit.sh check (exit $RC)"

HARD="$(ulimit -Hn)"
[[ "$HARD" != unlimited ]] || HARD=1048576
if ((HARD >= 256)); then
    # A soft limit below the hard one is a fixable shortfall: check must say so.
    run bash -c "ulimit -Sn 128 && '$ULIMIT_SH' check --nofile 256"
    ((RC == 1)) || fail "ulimit.sh check missed soft 128 < wanted 256 <= hard $HARD (exit $RC)"
    # apply -- COMMAND: the command runs with the raised soft limit.
    run bash -c "ulimit -Sn 128 && '$ULIMIT_SH' apply --nofile 256 -- bash -c 'ulimit -Sn'"
    ((RC == 0)) || fail "ulimit.sh apply -- cmd exited $RC: $OUT"
    [[ "$(tail -n 1 <<<"$OUT")" == 256 ]] || fail "command did not get soft limit 256: $OUT"
    pass "ulimit.sh detects and raises a low soft limit"
fi
# A wanted limit within the current soft limit is met.
run "$ULIMIT_SH" check --nofile 16
((RC == 0)) || fail "ulimit.sh check --nofile 16 exited $RC"

echo "test.sh: all $PASSED checks passed"
