#!/usr/bin/env bash
# Builds everything for Debian's Rust-enabled 7.3 kernel inside the Debian 13 build root: tcplog.ko
# (against the prepared headers), the tcplog tool and the in-VM test suite (with the root's cargo,
# so binaries link against the same glibc the VM image carries).
#
# With --lane debug (or TCPLOG_LANE=debug) it also builds the debug kernel (scripts/debug-kernel.sh)
# and tcplog.ko against it with the same clang, into target/debug-lane/module/tcplog.ko: kbuild
# builds in the source directory, so a copy of the sources is built there, and the stock build's
# objects stay as they are.
#
# Prints KENV=<file> (see build-root.sh) and, for the debug lane, DKENV=<file> (see
# debug-kernel.sh) as its last lines.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
lane=${TCPLOG_LANE:-stock}
case "${1:-}" in
--lane) lane=${2:?--lane needs stock or debug} ;;
--lane=*) lane=${1#--lane=} ;;
esac
case "$lane" in stock | debug) ;; *) echo "build: unknown lane '$lane'" >&2; exit 2 ;; esac
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
[ "$lane" = debug ] || exit 0

dkenv=$("$repo/scripts/debug-kernel.sh" "$kenv" | sed -n 's/^DKENV=//p')
[ -n "$dkenv" ] || { echo "build: the debug kernel did not build" >&2; exit 1; }
# shellcheck source=/dev/null
. "$dkenv"
start=$(date +%s)
# The module's sources (what kbuild reads: Kbuild, the crate and what it includes), without build
# products, copied with their times so that kbuild rebuilds only what changed.
copy=$repo/target/debug-lane/module
mkdir -p "$copy"
tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./qemu-test --exclude=./userspace-tool \
	--exclude='*.o' --exclude='*.ko' --exclude='*.mod' --exclude='*.mod.c' --exclude='.*.cmd' \
	--exclude=Module.symvers --exclude=modules.order --exclude=./module/bindings_generated.rs \
	-cf - . | tar -C "$copy" -xf -
"$repo/scripts/in-root.sh" "$kenv" \
	make -s -C "$DK_TREE_IN_ROOT" ARCH=x86_64 LLVM="$DK_LLVM" M=/src/target/debug-lane/module modules >&2
echo "[build] tcplog.ko for the debug kernel $DK_KREL built in $(($(date +%s) - start)) s" >&2
echo "DKENV=$dkenv"
