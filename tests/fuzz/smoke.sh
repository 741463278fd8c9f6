#!/usr/bin/env bash
# Fuzz smoke: builds every target of tests/fuzz, replays the kept inputs (seeds/ and
# regressions/, the inputs of past crashes), then fuzzes each target for SECONDS.
# Exits non-zero on a build failure or on any crash, leak, timeout or failed property.
#
#   tests/fuzz/smoke.sh [SECONDS]          SECONDS per target, default 30
#
# Environment:
#   FUZZ_JOBS=N     targets fuzzed at the same time, each on its own libFuzzer process
#                   (default: the number of CPUs this process may use)
#   FUZZ_CPUS=LIST  pin every fuzzer to these CPUs with taskset (e.g. "1"); default unpinned
#
# Installs cargo-fuzz (`cargo install --locked cargo-fuzz`) when it is missing. cargo-fuzz
# passes nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the installed stable
# toolchain accept them. The new corpus entries land in tests/fuzz/corpus/ (not committed).
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
seconds=${1:-30}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
	echo "smoke.sh: SECONDS must be a positive whole number (got '$seconds')" >&2
	exit 2
fi
jobs=${FUZZ_JOBS:-$(nproc)}
pin=()
if [[ -n ${FUZZ_CPUS:-} ]]; then pin=(taskset -c "$FUZZ_CPUS"); fi

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
cd "$FUZZ_DIR"

started=$SECONDS
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz"
	cargo install --locked cargo-fuzz
fi
echo "== $(cargo fuzz --version)"

echo "== build"
cargo fuzz build
build_done=$SECONDS
mapfile -t targets < <(cargo fuzz list)
echo "   built ${#targets[@]} targets in $((build_done - started)) s: ${targets[*]}"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# One target: the kept inputs first (libFuzzer runs every file of every corpus directory
# before it mutates), then fuzzing until the time is up. New inputs go to corpus/TARGET.
fuzz_one() {
	local target=$1 dirs=("corpus/$1")
	mkdir -p "corpus/$target"
	[[ -d seeds/$target ]] && dirs+=("seeds/$target")
	[[ -d regressions/$target ]] && dirs+=("regressions/$target")
	"${pin[@]}" cargo fuzz run "$target" "${dirs[@]}" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		>"$logs/$target.log" 2>&1
}

echo "== fuzz: ${seconds} s per target, $jobs at a time"
failed=()
pids=() names=()
wait_one() {
	local pid=${pids[0]} name=${names[0]}
	pids=("${pids[@]:1}") names=("${names[@]:1}")
	if wait "$pid"; then
		local runs
		runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$name.log" | grep -o '[0-9]*$' || true)
		local cov
		cov=$(grep -o 'cov: [0-9]*' "$logs/$name.log" | tail -1 || true)
		echo "   ok    $name: ${runs:-?} runs, ${cov:-cov: ?}"
	else
		echo "   FAIL  $name"
		# The failed property (the panic message), then libFuzzer's summary and the input.
		grep -A3 -m1 'panicked at' "$logs/$name.log" | sed 's/^/      /' || true
		grep -E 'ERROR: |SUMMARY: |Failing input|artifacts/|Output of|^\s*\[' "$logs/$name.log" |
			sed 's/^/      /' | head -12
		failed+=("$name")
	fi
}
for target in "${targets[@]}"; do
	if ((${#pids[@]} >= jobs)); then wait_one; fi
	fuzz_one "$target" &
	pids+=("$!") names+=("$target")
done
while ((${#pids[@]})); do wait_one; done

echo "== done in $((SECONDS - started)) s (build $((build_done - started)) s)"
if ((${#failed[@]})); then
	echo "fuzz smoke FAILED: ${failed[*]} (crash inputs are in tests/fuzz/artifacts/)" >&2
	exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, no crash"
