#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600), one libFuzzer process
# each, all at once, and prints each target's final statistics. Crashes
# land in fuzz/artifacts/<target>/. Usage: fuzz/run-all.sh [SECONDS] [TOOLCHAIN]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
tc=${2:-+nightly}
mkdir -p logs
cargo $tc fuzz build -s none
pids=()
for t in plan inventory records journal; do
  mkdir -p "corpus/$t"
  extra=()
  [ "$t" = journal ] && extra=(-max_len=65536)
  cargo $tc fuzz run -s none "$t" "corpus/$t" "../engine/tests/fuzz_corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
    > "logs/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in plan inventory records journal; do
  echo "== $t"
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)|==[0-9]+== ERROR|panicked|SUMMARY" "logs/$t.log" || true
  ls "artifacts/$t" 2>/dev/null | head
done
exit $status
