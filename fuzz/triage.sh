#!/usr/bin/env bash
# Groups the crash artifacts of a target by panic location and message.
#
#   fuzz/triage.sh <target>
#
# Prints one line per distinct panic: count, `file:line`, message, the first frame of the crate
# outside src/model.rs (the caller that matters for the shared `Tokens` helpers), smallest
# reproducer (FUZZ_BIN overrides the binary, e.g. one built from an older commit). FUZZ_KNOWN (see fuzz_targets/common/mod.rs) is cleared so every panic shows.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: triage.sh <target>}"
bin="${FUZZ_BIN:-${CARGO_TARGET_DIR:-/tmp/fuzz-target}/x86_64-unknown-linux-gnu/release/$target}"
declare -A count smallest size
for f in "$here/artifacts/$target"/crash-* "$here/artifacts/$target"/timeout-* "$here/artifacts/$target"/oom-*; do
    [ -e "$f" ] || continue
    out="$(FUZZ_KNOWN= RUST_BACKTRACE=1 "$bin" "$f" 2>&1 || true)"
    sig="$(grep -m1 -A1 "panicked at" <<<"$out" | tr '\n' ' ' | sed -E "s/thread '[^']*' \([0-9]+\) //; s/ +/ /g" || true)"
    caller="$(grep -E '^ +at /' <<<"$out" | grep -vE '/rustc/|/library/|\.cargo/registry|/src/model\.rs' | grep -m1 -oE '(src|fuzz_targets)/[^ ]+' || true)"
    [ -z "$sig" ] || sig="$sig via $caller"
    [ -n "$sig" ] || sig="$(grep -m1 -E "ERROR|timeout|out-of-memory" <<<"$out" || echo "no panic reproduced")"
    n=$(stat -c %s "$f")
    count[$sig]=$(( ${count[$sig]:-0} + 1 ))
    if [ -z "${size[$sig]:-}" ] || [ "$n" -lt "${size[$sig]}" ]; then size[$sig]=$n; smallest[$sig]=$f; fi
done
for sig in "${!count[@]}"; do
    printf '%5d  %s\n       smallest: %s (%d bytes)\n' "${count[$sig]}" "$sig" "${smallest[$sig]}" "${size[$sig]}"
done
