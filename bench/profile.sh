#!/usr/bin/env bash
# Where one target spends its CPU under load: perf (default) or callgrind (--callgrind).
#
#   bench/profile.sh                               coregate, perf, 10 s of wrk -t1 -c64 GET /5b
#   bench/profile.sh --target nginx --duration 20
#   bench/profile.sh --callgrind --duration 5      instructions per request + top functions
#   bench/profile.sh --sched 14000                 wake-up and run-queue delays per task under
#                                                  oha at a fixed rate (perf sched)
#
# The origin and the target start exactly as in bench/run.sh (configs, pinning). perf mode runs
# `perf record -a -g` while wrk loads the target, then prints
# `perf report --no-children --sort symbol` restricted to the target's busiest threads.
# Installs linux-perf / valgrind if missing; stops everything it started on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

usage() {
	cat <<'USAGE'
usage: bench/profile.sh [options]

  --target T           coregate, nginx or haproxy (default coregate)
  --duration S         seconds of load sampled (default 10)
  --conns N            wrk client connections (default 64)
  --path P             path requested (default /5b; /1k, /16k, /64b also exist)
  --callgrind          valgrind --tool=callgrind instead of perf
  --sched RATE         perf sched under oha at RATE req/s instead of sampling CPU
  --top N              report lines printed (default 30)
  --freq HZ            perf sampling frequency (default 999)
  --workers N          workers / shards of the target (default nproc)
  --port-base P        origin on P, targets on P+1.. (default 28000)
  --coregate-bin PATH  use this coregate binary, build nothing
  --no-install         install nothing
  --no-build           do not run cargo build
USAGE
}

install=1 build=1 target=coregate callgrind=0 sched=0 coregate_bin=""
pass=()
while (($#)); do
	opt=$1 val=""
	case $opt in
	--*=*) val=${opt#*=} opt=${opt%%=*} ;;
	esac
	case $opt in
	--target | --duration | --conns | --path | --top | --freq | --workers | --port-base | --coregate-bin | --sched)
		if [[ -z $val ]]; then
			(($# >= 2)) || { echo "profile.sh: $opt needs a value" >&2; exit 2; }
			val=$2
			shift
		fi
		case $opt in
		--target) target=$val ;;
		--coregate-bin) coregate_bin=$val build=0 ;;
		--sched) sched=1 ;;
		esac
		[[ $opt == --coregate-bin ]] || pass+=("$opt" "$val")
		;;
	--callgrind) callgrind=1 pass+=(--callgrind) ;;
	--no-install) install=0 ;;
	--no-build) build=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "profile.sh: unknown option $opt (see --help)" >&2; exit 2 ;;
	esac
	shift
done

# shellcheck source=bench/harness/common.sh
. "$BENCH_DIR/harness/common.sh"
guard

if ((install)); then
	pkgs=()
	command -v wrk >/dev/null || pkgs+=(wrk)
	command -v nginx >/dev/null || pkgs+=(nginx)
	command -v haproxy >/dev/null || pkgs+=(haproxy)
	command -v taskset >/dev/null || pkgs+=(util-linux)
	if ((callgrind)); then
		command -v valgrind >/dev/null || pkgs+=(valgrind)
	else
		command -v perf >/dev/null || pkgs+=(linux-perf)
	fi
	if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
	if ((sched)) && ! command -v oha >/dev/null; then
		say "installing oha with cargo (compiles for several minutes, once)"
		cargo install --locked oha
	fi
fi

if [[ -z $coregate_bin ]]; then
	coregate_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/coregate"
fi
if [[ $target == coregate* ]] && ((build)); then
	# Release profile keeps line tables (debug = "line-tables-only"): symbols resolve in perf.
	say "building coregate (release): cargo build --release -p coregate-bins"
	(cd "$ROOT" && cargo build --release -p coregate-bins)
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUN_DIR="$BENCH_DIR/out/profile-$target-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
say "run directory: $RUN_DIR"
status=0
run_harness python3 "$BENCH_DIR/harness/profile.py" --run-dir "$RUN_DIR" --target "$target" \
	--coregate-bin "$coregate_bin" "${pass[@]}" || status=$?
exit "$status"
