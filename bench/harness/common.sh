# shellcheck shell=bash
# Shell helpers shared by bench/run.sh and bench/profile.sh (sourced, not run).
#
#   apt_install PKG...     apt-get install without starting any service the package ships
#   guard                  installs the EXIT/INT/TERM traps described at cleanup()
#   run_harness CMD...     runs CMD (the Python harness) in the background and waits for it,
#                          so a signal reaches the traps at once; returns CMD's status
#
# RUN_DIR must be set (to the run directory) before run_harness.

RUN_DIR=${RUN_DIR:-}
harness_pid=""
SUDO=""
if ((EUID != 0)) && command -v sudo >/dev/null; then SUDO=sudo; fi
POLICY_RC=/usr/sbin/policy-rc.d
made_policy=0

say() { printf '%s\n' "$*"; }

apt_install() {
	say "installing with apt: $*"
	# Installing nginx or haproxy would start their system services; policy-rc.d forbids that
	# for the duration of the install (removed right after, or by cleanup on an interruption).
	if [[ ! -e $POLICY_RC ]]; then
		made_policy=1
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null
		$SUDO chmod 755 "$POLICY_RC"
	fi
	$SUDO apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
	if ((made_policy)); then
		$SUDO rm -f "$POLICY_RC"
		made_policy=0
	fi
}

# Ends the harness if it still runs, then any process group it recorded but could not stop.
# The harness records "PGID STARTTIME NAME" in RUN_DIR/pgids for every process it starts;
# STARTTIME guards against a PID reused since. Only those groups are signalled, nothing is
# looked up by name.
# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -n $harness_pid ]] && kill -0 "$harness_pid" 2>/dev/null; then
		kill -TERM "$harness_pid" 2>/dev/null || true
		wait "$harness_pid" 2>/dev/null || true
	fi
	local pgid start name stat rest fields left=()
	if [[ -n $RUN_DIR && -s $RUN_DIR/pgids ]]; then
		while read -r pgid start name; do
			[[ -r /proc/$pgid/stat ]] || continue
			stat=$(<"/proc/$pgid/stat")
			rest=${stat##*) }
			read -ra fields <<<"$rest"
			[[ ${fields[19]:-} == "$start" ]] || continue
			say "stopping leftover $name (process group $pgid)" >&2
			kill -TERM -- "-$pgid" 2>/dev/null || true
			left+=("$pgid")
		done <"$RUN_DIR/pgids"
		if ((${#left[@]})); then
			sleep 2
			for pgid in "${left[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
		fi
	fi
	if ((made_policy)); then $SUDO rm -f "$POLICY_RC"; fi
	exit "$status"
}

guard() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

run_harness() {
	local status=0
	# Background + wait: bash runs a trap only once a foreground child has returned.
	"$@" &
	harness_pid=$!
	wait "$harness_pid" || status=$?
	harness_pid=""
	return "$status"
}
