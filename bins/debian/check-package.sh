#!/usr/bin/env bash
# Builds coregate's Debian package from the release binary already built (the benchmark smoke
# in .ci/run builds it; this builds it when it is missing), installs it with dpkg, runs
# `coregate check` from it, verifies the systemd unit, then removes and purges it, checking
# that nothing is left. Installs cargo-deb (cargo install) and systemd (apt) only if missing.
# Needs root (or sudo): it installs a package.
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo)
say() { echo "-- $*"; }

target="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$target/release/coregate" ]; then
	say "no release binary yet: cargo build --release -p coregate-bins"
	cargo build --release -p coregate-bins
fi
if ! cargo deb --version >/dev/null 2>&1; then
	say "installing cargo-deb"
	cargo install --locked cargo-deb
fi
deb=$(cargo deb -p coregate-bins --no-build | tail -n 1)
say "built $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'

if dpkg -s coregate >/dev/null 2>&1; then
	echo "coregate is installed already; refusing to replace it" >&2
	exit 1
fi
say "dpkg -i"
"${as_root[@]}" dpkg -i "$deb"
cleanup() { "${as_root[@]}" dpkg --purge coregate >/dev/null 2>&1 || true; }
trap cleanup EXIT

say "coregate check, from the package"
/usr/bin/coregate --version
/usr/bin/coregate check --config /etc/coregate/coregate.toml
/usr/bin/coregate check --topology --config /etc/coregate/coregate.toml >/dev/null
id coregate
[ "$(stat -c %U /var/log/coregate)" = coregate ]

say "systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null; then
	"${as_root[@]}" apt-get install -y --no-install-recommends systemd >/dev/null
fi
# verify prints problems and exits non-zero for errors; warnings are failures here too.
out=$(systemd-analyze verify /usr/lib/systemd/system/coregate.service 2>&1) || {
	echo "$out" >&2
	exit 1
}
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi

say "dpkg -r, then --purge"
"${as_root[@]}" dpkg -r coregate
[ ! -e /usr/bin/coregate ]
[ -e /etc/coregate/coregate.toml ] # a configuration file stays until purge
"${as_root[@]}" dpkg --purge coregate
trap - EXIT
for left in /etc/coregate /var/log/coregate /usr/share/coregate /usr/lib/systemd/system/coregate.service; do
	if [ -e "$left" ]; then
		echo "left behind: $left" >&2
		exit 1
	fi
done
if getent passwd coregate >/dev/null; then
	echo "left behind: the coregate user" >&2
	exit 1
fi
say "package ok"
