#!/usr/bin/env bash
# What the tuning profiles' knobs are worth on this machine (bench/RESULTS.md, "Proof in
# numbers"): coregate with 1 shard against 2, and ring_entries, idle_wait, buffer_size and
# defer_accept changed one at a time from the defaults. Each variant in turn, every repeat,
# in front of the same origin with the same load generator as bench/run.sh.
#
#   bench/knobs.sh                         3 repeats x 10 s per measurement (about 20 minutes)
#   bench/knobs.sh --repeats 5 --duration 20
#   bench/knobs.sh --configs-only          render and `coregate check` every variant; no load
#
# Installs wrk and nginx when missing (apt, services not started), builds coregate in release
# (unless --no-build or --coregate-bin), writes the table into bench/RESULTS.md between
# <!-- knobs:begin --> and <!-- knobs:end --> (unless --no-results), and stops everything it
# started, including after Ctrl-C.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

cmdline="bench/knobs.sh${*:+ $*}"
repeats=3 duration=10 build=1 results="$BENCH_DIR/RESULTS.md" coregate_bin="" configs_only=0
port_base=28000
while (($#)); do
	case $1 in
	--repeats) repeats=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--port-base) port_base=$2; shift 2 ;;
	--coregate-bin) coregate_bin=$2; build=0; shift 2 ;;
	--no-build) build=0; shift ;;
	--no-results) results=""; shift ;;
	--configs-only) configs_only=1; shift ;;
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "bench/knobs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

# shellcheck source=bench/harness/common.sh
. "$BENCH_DIR/harness/common.sh"

if ((!configs_only)); then
	missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v nginx >/dev/null || missing+=(nginx)
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
fi
coregate_bin=${coregate_bin:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coregate}
if ((build)); then
	say "building coregate (release): cargo build --release -p coregate-bins"
	(cd "$ROOT" && cargo build --release -p coregate-bins)
fi

RUN_DIR="$BENCH_DIR/out/knobs-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN_DIR"
guard
args=(--run-dir "$RUN_DIR" --coregate-bin "$coregate_bin" --repeats "$repeats"
	--duration "$duration" --port-base "$port_base" --command "$cmdline")
((configs_only)) && args+=(--configs-only)
[[ -n $results ]] && ((!configs_only)) && args+=(--results "$results")
cd "$BENCH_DIR/harness"
run_harness python3 knobs.py "${args[@]}"
