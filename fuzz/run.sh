#!/usr/bin/env bash
# Runs every fuzz target (or those named after the seconds) for SECONDS each, one at a time, with
# libFuzzer's memory limits so that amplification counts as a crash, and prints each target's
# executions. New inputs go to fuzz/target/corpus/<target>; the committed seeds in
# fuzz/corpus/<target> are read, never written. A crash leaves its input in fuzz/artifacts/<target>.
# Usage: fuzz/run.sh SECONDS [TARGET...], or fuzz/run.sh --rustc-version (the compiler it uses).
# The nightly toolchain is used when installed, else stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs unstable flags); FUZZ_CARGO overrides the command. FUZZ_TARGET_DIR is the cargo target
# dir (default fuzz/target). FUZZ_RUNS=N stops each target after N executions instead (SECONDS
# is then only an upper bound), for counted campaigns such as `make fuzz-10m`.
set -uo pipefail
cd "$(dirname "$0")/.."
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly) rustc=(rustc +nightly)
else
  cargo=(env RUSTC_BOOTSTRAP=1 cargo) rustc=(rustc)
fi
[ -z "${FUZZ_CARGO:-}" ] || read -r -a cargo <<<"$FUZZ_CARGO"
if [ "${1:-}" = --rustc-version ]; then
  exec "${rustc[@]}" --version
fi
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kpl cloudwatch gzip config ndjson firehose)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
logs=fuzz/target/logs
mkdir -p "$logs"

summary=()
failed=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/target/corpus/$target"
  log="$logs/$target.log"
  echo "==> fuzz $target for ${seconds}s (log: $log)"
  # -a: debug assertions and overflow checks on, as in tests.
  # The regressions are read as corpus too, so every run replays them first.
  inputs=("fuzz/target/corpus/$target" "fuzz/corpus/$target")
  [ -d "fuzz/regressions/$target" ] && inputs+=("fuzz/regressions/$target")
  runs=()
  [ -z "${FUZZ_RUNS:-}" ] || runs=(-runs="$FUZZ_RUNS")
  "${cargo[@]}" fuzz run -a "$target" "${inputs[@]}" -- \
    -max_total_time="$seconds" "${runs[@]}" -rss_limit_mb=512 -malloc_limit_mb=256 \
    -print_final_stats=1 >"$log" 2>&1
  status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed=1
    tail -n 40 "$log"
  fi
  summary+=("$(printf '%-11s %12s execs %8s exec/s  %s' "$target" "${execs:-?}" "${rate:-?}" "$result")")
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
