#!/usr/bin/env bash
# Soak: coregate at a fixed rate for a long time, with upstream faults mixed in, sampling its
# memory and open descriptors; prints whether both stayed flat after warm-up.
#
#   bench/soak.sh                        30 minutes at 500 req/s over 50 connections
#   bench/soak.sh --duration 180         a 3-minute check that everything works
#
# Options: --duration S (default 1800), --rate R (500), --conns C (50), --interval S (10),
# --warmup S (10 % of the duration, at least 60), --cores LIST, --port-base P (origin on P,
# coregate on P+1; default 29000), --coregate-bin PATH (build nothing), --no-install.
#
# Installs what is missing (apt: wrk, nginx), builds coregate in release, then hands over to
# bench/harness/soak.py, which starts the NGINX origin, three faulty upstreams and coregate,
# drives wrk (bench/harness/soak.lua), and writes bench/out/soak-RUN/: soak.csv (one sample per
# interval: elapsed_s, rss_kib, fds, threads, cpu_s), soak.json (totals and verdict) and logs.
# Exit status: 0 flat (or too short for a verdict), 1 growing, 2 the soak itself failed.
# Everything it starts is stopped on exit, including after Ctrl-C or a SIGTERM.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

cmdline="bench/soak.sh"
for arg in "$@"; do
	if [[ $arg =~ ^[A-Za-z0-9_./,:=@%+-]+$ ]]; then cmdline+=" $arg"; else cmdline+=" $(printf '%q' "$arg")"; fi
done

install=1 coregate_bin=""
pass=()
while (($#)); do
	opt=$1 val=""
	case $opt in
	--*=*) val=${opt#*=} opt=${opt%%=*} ;;
	esac
	case $opt in
	--duration | --rate | --conns | --interval | --warmup | --cores | --port-base | --coregate-bin)
		if [[ -z $val ]]; then
			(($# >= 2)) || { echo "soak.sh: $opt needs a value" >&2; exit 2; }
			val=$2
			shift
		fi
		if [[ $opt == --coregate-bin ]]; then coregate_bin=$val; else pass+=("$opt" "$val"); fi
		;;
	--no-install) install=0 ;;
	-h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "soak.sh: unknown option $opt (see --help)" >&2; exit 2 ;;
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
	if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
fi
for tool in wrk nginx python3; do
	command -v "$tool" >/dev/null || { say "soak.sh: $tool is missing (run without --no-install)" >&2; exit 2; }
done

if [[ -z $coregate_bin ]]; then
	coregate_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/coregate"
	say "building coregate (release): cargo build --release -p coregate-bins"
	(cd "$ROOT" && cargo build --release -p coregate-bins)
fi

# Two descriptors per proxied connection, plus the faulty upstreams' churn.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RUN_DIR="$BENCH_DIR/out/soak-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
say "run directory: $RUN_DIR"
status=0
run_harness python3 "$BENCH_DIR/harness/soak.py" --command "$cmdline" --run-dir "$RUN_DIR" \
	--coregate-bin "$coregate_bin" "${pass[@]}" || status=$?
exit "$status"
