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
# One build at a time (check.sh runs lanes at once, and each lane builds what it needs): the
# build root's apt and mounts, kbuild and cargo in one tree are not for two at once. The lock is
# let go while the debug kernel builds (it has its own), so that other lanes go on meanwhile.
cache=${TCPLOG_CACHE:-/var/cache/tcplog}
mkdir -p "$cache"
exec 8>"$cache/build.lock"
flock 8
kenv=$("$repo/scripts/build-root.sh" | sed -n 's/^KENV=//p')
[ -n "$kenv" ] || { echo "build: the build root did not come up" >&2; exit 1; }
# shellcheck source=/dev/null
. "$kenv"

# Kbuild's copy of rust/Makefile's bindgen_skip_c_flags (the headers tree does not ship it) must
# be the kernel source's own: a flag the kernel drops for bindgen and we pass would make libclang
# fail or, worse, see other layouts. The source's rust/Makefile is taken from linux-source-7.3
# once per kernel version.
flag_list() { awk -v v="$1" '$1 == v && ($2 == ":=" || $2 == "=") { on = 1; $1 = ""; $2 = "" }
	on { line = $0; sub(/\\$/, "", line); printf "%s ", line; if ($0 !~ /\\$/) exit }' "$2" |
	tr -s ' \t' '\n' | sed '/^$/d' | sort; }
ref=${BUILD_ROOT%/root}/kernel-$KVER/reference/rust-Makefile
if [ ! -s "$ref" ]; then
	mkdir -p "${ref%/*}"
	"$repo/scripts/in-root.sh" "$kenv" tar -xOf /usr/src/linux-source-7.3.tar.xz --wildcards '*/rust/Makefile' >"$ref.tmp"
	mv "$ref.tmp" "$ref"
fi
if ! skip_diff=$(diff <(flag_list bindgen_skip_c_flags "$ref") <(flag_list tcplog_bindgen_skip_c_flags "$repo/Kbuild")) ||
	[ -z "$(flag_list bindgen_skip_c_flags "$ref")" ]; then
	echo "build: Kbuild's tcplog_bindgen_skip_c_flags differs from rust/Makefile's bindgen_skip_c_flags of $KPKG_VERSION (< the kernel's, > Kbuild's):" >&2
	echo "$skip_diff" >&2
	exit 1
fi

start=$(date +%s)
"$repo/scripts/in-root.sh" "$kenv" sh -euc "
	cd /src
	make -s -C $KDIR_IN_ROOT M=/src modules
	CARGO_TARGET_DIR=/src/target/buildroot cargo build -q --release --locked
" >&2
echo "[build] module and tools built in $(($(date +%s) - start)) s" >&2
echo "KENV=$kenv"
[ "$lane" = debug ] || exit 0

flock -u 8
dkenv=$("$repo/scripts/debug-kernel.sh" "$kenv" | sed -n 's/^DKENV=//p')
flock 8
[ -n "$dkenv" ] || { echo "build: the debug kernel did not build" >&2; exit 1; }
# shellcheck source=/dev/null
. "$dkenv"
start=$(date +%s)
"$repo/scripts/copy-module-sources.sh" "$repo/target/debug-lane/module"
"$repo/scripts/in-root.sh" "$kenv" \
	make -s -C "$DK_TREE_IN_ROOT" ARCH=x86_64 LLVM="$DK_LLVM" M=/src/target/debug-lane/module modules >&2
echo "[build] tcplog.ko for the debug kernel $DK_KREL built in $(($(date +%s) - start)) s" >&2
echo "DKENV=$dkenv"
