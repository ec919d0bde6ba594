#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md on a fresh clone (with ../shared beside it):
# builds the release binary and the bench driver, generates the corpora with
# ../shared/tools/gen_corpus.py (seeded, so every run sees the same files), then runs the
# scenarios and prints Markdown tables.
#
#   bash bench/run.sh                 # every scenario (about an hour; idle alone is 10 min,
#                                     # rtt about 20 min, faults about 3 min)
#   bash bench/run.sh parse append    # some of them
#   bash bench/run.sh vs-ccusage      # export vs ccusage on the same Claude files (skipped,
#                                     # with a message, when ccusage is not installed)
#
# Environment: BENCH_WORK (default /tmp/opensyncd-bench), BENCH_IDLE_SECS (600),
# BENCH_LATENCY_APPENDS (1000), BENCH_SIZE_MB (1024), BENCH_SMALL_MB (256), BENCH_TINY_MB (16),
# BENCH_CCUSAGE (ccusage's executable; default: `ccusage` on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

work="${BENCH_WORK:-/tmp/opensyncd-bench}"
gen="$(cd .. && pwd)/shared/tools/gen_corpus.py"
fixtures="$(cd .. && pwd)/shared/fixtures/real"
mkdir -p "$work"

cargo build --release --locked --quiet
cargo build --release --locked --quiet --example bench

big="$work/home-${BENCH_SIZE_MB:-1024}m"
small="$work/home-${BENCH_SMALL_MB:-256}m"
tiny="$work/home-${BENCH_TINY_MB:-16}m"
[ -d "$big" ] || python3 "$gen" --out "$big" --size-mb "${BENCH_SIZE_MB:-1024}" --big-session-mb 200 --seed 1 --quiet
[ -d "$small" ] || python3 "$gen" --out "$small" --size-mb "${BENCH_SMALL_MB:-256}" --seed 2 --quiet
[ -d "$tiny" ] || python3 "$gen" --out "$tiny" --size-mb "${BENCH_TINY_MB:-16}" --seed 0 --quiet

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(parse append latency backfill rtt faults idle coldstart vs-ccusage)

exec target/release/examples/bench \
  --bin target/release/opensyncd \
  --work "$work" \
  --corpus "$big" \
  --corpus-small "$small" \
  --corpus-tiny "$tiny" \
  --fixtures "$fixtures" \
  --idle-secs "${BENCH_IDLE_SECS:-600}" \
  --latency-appends "${BENCH_LATENCY_APPENDS:-1000}" \
  --ccusage "${BENCH_CCUSAGE:-}" \
  "${scenarios[@]}"
