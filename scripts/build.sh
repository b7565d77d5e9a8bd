#!/usr/bin/env bash
# Builds tcplog inside the Debian build roots (scripts/build-root.sh): tcplog.ko for Debian's stock
# kernel (backports/amd64) at ./tcplog.ko, the tcplog tool and the in-VM test suite (with the
# trixie root's cargo, so binaries link against the glibc the VM image carries), and tcplog.ko for
# each further kernel asked for.
#
# Usage: scripts/build.sh [--lane debug] [--kernels "KERNEL..."]
#   --kernels  Debian kernels to build tcplog.ko for besides the stock one, as build-root.sh takes
#              them (SUITE/FLAVOUR[@SERIES][=VERSION]), or `all`: the amd64 and cloud-amd64
#              flavours of the current backports and unstable kernels (rt-amd64, PREEMPT_RT, is
#              refused by Kbuild). Each module goes to
#              target/kernels/KVER/tcplog.ko (kbuild builds in the source directory, so each kernel
#              gets a copy of the sources, and the stock build's objects stay as they are).
#   --lane debug  also the debug kernel (scripts/debug-kernel.sh) and tcplog.ko against it with
#              the same clang, into target/debug-lane/module/tcplog.ko.
#
# Prints KENV=<file> (the stock kernel's, see build-root.sh), then for each further kernel
# MODULE=<its KENV file> <the module's path in the repository>, and for the debug lane
# DKENV=<file> (see debug-kernel.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
lane=${TCPLOG_LANE:-stock}
kernels=${TCPLOG_KERNELS:-}
while [ $# -gt 0 ]; do
	case "$1" in
	--lane) lane=${2:?--lane needs stock or debug}; shift 2 ;;
	--lane=*) lane=${1#--lane=}; shift ;;
	--kernels) kernels=${2?--kernels needs a list}; shift 2 ;;
	--kernels=*) kernels=${1#--kernels=}; shift ;;
	*) echo "build: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
case "$lane" in stock | debug) ;; *) echo "build: unknown lane '$lane'" >&2; exit 2 ;; esac
expanded=
for k in $kernels; do
	case "$k" in
	all) expanded+=" backports/amd64 backports/cloud-amd64 unstable/amd64 unstable/cloud-amd64" ;;
	stock) expanded+=" backports/amd64" ;;
	*) expanded+=" $k" ;;
	esac
done
# One build at a time (check.sh runs lanes at once, and each lane builds what it needs): the
# build roots' apt and mounts, kbuild and cargo in one tree are not for two at once. The lock is
# let go while the debug kernel builds (it has its own), so that other lanes go on meanwhile.
cache=${TCPLOG_CACHE:-/var/cache/tcplog}
mkdir -p "$cache"
exec 8>"$cache/build.lock"
flock 8

# Kbuild's copy of rust/Makefile's bindgen_skip_c_flags (the headers tree does not ship it) must
# be the kernel source's own: a flag the kernel drops for bindgen and we pass would make libclang
# fail or, worse, see other layouts. build-root.sh keeps each kernel's rust/Makefile.
flag_list() { awk -v v="$1" '$1 == v && ($2 == ":=" || $2 == "=") { on = 1; $1 = ""; $2 = "" }
	on { line = $0; sub(/\\$/, "", line); printf "%s ", line; if ($0 !~ /\\$/) exit }' "$2" |
	tr -s ' \t' '\n' | sed '/^$/d' | sort; }
# A subshell: the kernel's environment it reads stays there.
check_skip_flags() (
	local kenv=$1 ref skip_diff ours
	# shellcheck source=/dev/null
	. "$kenv"
	ref=$cache/kernel-$KVER/reference/rust-Makefile
	if [ ! -s "$ref" ]; then
		mkdir -p "${ref%/*}"
		"$repo/scripts/in-root.sh" "$kenv" tar -xOf "$KSRC_TARBALL" --wildcards '*/rust/Makefile' >"$ref.tmp"
		mv "$ref.tmp" "$ref"
	fi
	# Kbuild's list as make sees it for this kernel's release.
	ours=$(printf 'VERSION := %s\nPATCHLEVEL := %s\ninclude %s\ntcplog-print:\n\t@echo $(tcplog_bindgen_skip_c_flags)\n' \
		"${KSERIES%%.*}" "${KSERIES#*.}" "$repo/Kbuild" | make -s --no-print-directory -f - tcplog-print | tr -s ' ' '\n' | sed '/^$/d' | sort)
	if ! skip_diff=$(diff <(flag_list bindgen_skip_c_flags "$ref") <(printf '%s\n' "$ours")) ||
		[ -z "$(flag_list bindgen_skip_c_flags "$ref")" ]; then
		echo "build: Kbuild's tcplog_bindgen_skip_c_flags differs from rust/Makefile's bindgen_skip_c_flags of $KVER ($KPKG_VERSION) (< the kernel's, > Kbuild's):" >&2
		echo "$skip_diff" >&2
		return 1
	fi
)

kenv=$("$repo/scripts/build-root.sh" | sed -n 's/^KENV=//p')
[ -n "$kenv" ] || { echo "build: the build root did not come up" >&2; exit 1; }
check_skip_flags "$kenv"
# shellcheck source=/dev/null
. "$kenv"
start=$(date +%s)
"$repo/scripts/in-root.sh" "$kenv" sh -euc "
	cd /src
	make -s -C $KDIR_IN_ROOT M=/src modules
	CARGO_TARGET_DIR=/src/target/buildroot cargo build -q --release --locked
" >&2
echo "[build] module and tools built in $(($(date +%s) - start)) s" >&2
stock_kver=$KVER
echo "KENV=$kenv"

for k in $expanded; do
	kkenv=$("$repo/scripts/build-root.sh" "$k" | sed -n 's/^KENV=//p')
	[ -n "$kkenv" ] || { echo "build: kernel $k: its build root did not come up" >&2; exit 1; }
	check_skip_flags "$kkenv"
	# shellcheck source=/dev/null
	. "$kkenv"
	if [ "$KVER" = "$stock_kver" ]; then
		echo "MODULE=$kkenv tcplog.ko"
		continue
	fi
	start=$(date +%s)
	dir=target/kernels/$KVER
	"$repo/scripts/copy-module-sources.sh" "$repo/$dir"
	"$repo/scripts/in-root.sh" "$kkenv" make -s -C "$KDIR_IN_ROOT" M="/src/$dir" modules >&2
	echo "[build] tcplog.ko for $KVER ($k) built in $(($(date +%s) - start)) s" >&2
	echo "MODULE=$kkenv $dir/tcplog.ko"
done
[ "$lane" = debug ] || exit 0

# shellcheck source=/dev/null
. "$kenv"
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
