#!/usr/bin/env bash
# README's test command: host unit tests, checks of the built module, and the in-VM suite in both
# lanes: Debian's stock kernel with its memory debugging on, then the debug kernel (KASAN,
# lockdep, ...; see qemu-test/run-vm.sh). TCPLOG_LANES="stock" (or "debug") runs only that lane.
# Ends with one line "N passed, N failed" that sums everything; exits nonzero if anything failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

"$repo/scripts/setup-host.sh" || { failed=$((failed + 1)); finish; }
kenv=$("$repo/scripts/build.sh" | sed -n 's/^KENV=//p')
if [ -z "$kenv" ]; then
	echo "[check] the build failed" >&2
	failed=$((failed + 1))
	finish
fi
# shellcheck source=/dev/null
. "$kenv"

echo "== host: cargo test"
log=$(mktemp)
"$repo/scripts/in-root.sh" "$kenv" sh -c 'cd /src && CARGO_TARGET_DIR=/src/target/buildroot cargo test --locked 2>&1' | tee "$log"
rc=${PIPESTATUS[0]}
read -r p f < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
	echo "[check] cargo test failed before running its tests" >&2
	failed=$((failed + 1))
fi
rm -f "$log"

echo "== host: the built module"
check() {
	local name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name: $out"
		failed=$((failed + 1))
	fi
}
modinfo_field() { "$repo/scripts/in-root.sh" "$kenv" modinfo -F "$1" "$2"; }
same_vermagic() {
	local ours theirs
	ours=$(modinfo_field vermagic /src/tcplog.ko)
	theirs=$(modinfo_field vermagic "$MODDIR_IN_ROOT/kernel/drivers/net/veth.ko.xz")
	[ -n "$ours" ] && [ "$ours" = "$theirs" ] || { echo "ours '$ours', Debian's veth.ko '$theirs'"; return 1; }
	case "$ours" in "$KVER "*) ;; *) echo "vermagic '$ours' is not for $KVER"; return 1 ;; esac
}
license_gpl() { [ "$(modinfo_field license /src/tcplog.ko)" = GPL ]; }
metadata() {
	[ "$(modinfo_field name /src/tcplog.ko)" = tcplog ] &&
		[ -n "$(modinfo_field author /src/tcplog.ko)" ] &&
		[ -n "$(modinfo_field description /src/tcplog.ko)" ]
}
# The whole module through clippy (kbuild's CLIPPY=1 runs clippy-driver in place of rustc, with
# the lints the kernel's own Rust code is held to), from a copy of the sources so that every file
# is linted, not only those changed since the last build: any warning fails.
clippy_clean() {
	local out
	rm -rf "$repo/target/clippy/module"
	"$repo/scripts/copy-module-sources.sh" "$repo/target/clippy/module"
	out=$("$repo/scripts/in-root.sh" "$kenv" make -s -C "$KDIR_IN_ROOT" M=/src/target/clippy/module CLIPPY=1 modules 2>&1) ||
		{ echo "$out"; return 1; }
	! grep -E '^(warning|error)' <<<"$out" || { echo "$out"; return 1; }
}
check "tcplog.ko has the vermagic of Debian's own modules" same_vermagic
check "make CLIPPY=1: the module is clippy-clean" clippy_clean
check "tcplog.ko is licensed GPL" license_gpl
check "tcplog.ko names itself, its authors and what it does" metadata

# Runs the in-VM suite in one lane and adds its last line's numbers.
vm_lane() {
	local lane=$1 log p f
	log=$(mktemp)
	"$repo/qemu-test/run-vm.sh" --lane "$lane" test | tee "$log"
	read -r p f < <(tail -n 1 "$log" | awk '/^[0-9]+ passed, [0-9]+ failed$/ { print $1, $3; next } { print 0, 1 }')
	passed=$((passed + p))
	failed=$((failed + f))
	rm -f "$log"
}

lanes=${TCPLOG_LANES:-stock debug}
for lane in $lanes; do
	case "$lane" in
	stock)
		echo "== VM, stock lane: Debian's kernel with KFENCE, SLUB debugging and page poisoning"
		vm_lane stock
		;;
	debug)
		echo "== VM, debug lane: the debug kernel (KASAN, KFENCE, UBSAN, lockdep, KUnit, ...)"
		start=$(date +%s)
		dkenv=$("$repo/scripts/build.sh" --lane debug | sed -n 's/^DKENV=//p')
		echo "[check] the debug lane's kernel and module took $(($(date +%s) - start)) s"
		if [ -z "$dkenv" ]; then
			echo "FAIL the debug kernel and tcplog.ko for it build"
			failed=$((failed + 1))
			continue
		fi
		# shellcheck source=/dev/null
		. "$dkenv"
		debug_vermagic() {
			local v
			v=$(modinfo_field vermagic /src/target/debug-lane/module/tcplog.ko)
			case "$v" in "$DK_KREL "*) ;; *) echo "vermagic '$v' is not for $DK_KREL"; return 1 ;; esac
		}
		check "tcplog.ko of the debug lane has the debug kernel's vermagic" debug_vermagic
		vm_lane debug
		;;
	*)
		echo "FAIL unknown lane '$lane' in TCPLOG_LANES"
		failed=$((failed + 1))
		;;
	esac
done
finish
