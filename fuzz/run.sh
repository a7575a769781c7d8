#!/usr/bin/env bash
# Run every cargo-fuzz target for SECONDS each (default 60) and stop at the first crash.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target asserts
# its decoder's invariants (consumed <= input length, bounded leftover, no panic, and for the
# WebSocket and SSE targets: the same events whatever the read sizes). Crashes land in
# fuzz/artifacts/TARGET/; corpora grow in fuzz/corpus/TARGET/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: needs cargo-fuzz on the nightly toolchain: cargo install cargo-fuzz" >&2
  exit 2
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  echo "=== fuzz $t for ${seconds}s"
  # -rss_limit_mb bounds what one input may make the decoder allocate.
  cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=512
done
echo "fuzz/run.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
