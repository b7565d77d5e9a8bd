#!/usr/bin/env bash
# Builds everything for Debian's Rust-enabled 7.3 kernel inside the Debian 13 build root: tcplog.ko
# (against the prepared headers), the tcplog tool and the in-VM test suite (with the root's cargo,
# so binaries link against the same glibc the VM image carries).
#
# Prints KENV=<file> as its last line (see build-root.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
kenv=$("$repo/scripts/build-root.sh" | sed -n 's/^KENV=//p')
[ -n "$kenv" ] || { echo "build: the build root did not come up" >&2; exit 1; }
# shellcheck source=/dev/null
. "$kenv"

start=$(date +%s)
"$repo/scripts/in-root.sh" "$kenv" sh -euc "
	cd /src
	make -s -C $KDIR_IN_ROOT M=/src modules
	CARGO_TARGET_DIR=/src/target/buildroot cargo build -q --release --locked
" >&2
echo "[build] module and tools built in $(($(date +%s) - start)) s" >&2
echo "KENV=$kenv"
