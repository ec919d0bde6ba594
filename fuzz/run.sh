#!/usr/bin/env bash
# Runs one fuzz target for N seconds on a scratch copy of its seed corpus.
#
#   fuzz/run.sh <target> [seconds] [extra libFuzzer flags...]
#
# Needs cargo-fuzz on PATH (see README.md). Uses the target's dictionary from fuzz/dict/.
# - stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags;
# - `-s none`: no AddressSanitizer (the crate forbids unsafe code; 2-3x more executions),
#   debug assertions and overflow checks stay on (cargo-fuzz's default without -O);
# - the grown corpus lives in $FUZZ_CORPUS_DIR/<target> (default /tmp/fuzz-corpus), never in
#   the repo; fuzz/corpus/<target> holds only the committed seeds;
# - `-fork=1 -ignore_crashes=1`: one worker process at a time that keeps going after a crash,
#   so a single easy-to-hit bug does not end the run (each crash is saved under
#   fuzz/artifacts/<target>/); triage with `fuzz/triage.sh <target>`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: run.sh <target> [seconds] [libFuzzer flags...]}"
secs="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/fuzz-target}"
corpus="${FUZZ_CORPUS_DIR:-/tmp/fuzz-corpus}/$target"
mkdir -p "$corpus" "$here/artifacts/$target"
cp -n "$here/corpus/$target/"* "$corpus/" 2>/dev/null || true
cd "$here"
# Build with cargo-fuzz, then run the binary directly: `cargo fuzz run` would, after a run with
# crashes, rebuild the target and re-run every artifact just to print it.
cargo fuzz build -s none "$target"
dict=()
case "$target" in
    claude_line|codex_line|opencode_record|pi_line|cursor_line) dict=(-dict="$here/dict/jsonl.dict") ;;
    droid_line) dict=(-dict="$here/dict/droid.dict") ;;
    server_response) dict=(-dict="$here/dict/server.dict") ;;
    config_value) dict=(-dict="$here/dict/config.dict") ;;
esac
exec "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$target" \
    -artifact_prefix="$here/artifacts/$target/" "${dict[@]}" \
    -max_total_time="$secs" -fork=1 -ignore_crashes=1 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$@" "$corpus"
