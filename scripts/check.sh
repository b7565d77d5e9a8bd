#!/usr/bin/env bash
# README's test command: host unit tests, checks of the built module, and the in-VM suite.
# Ends with one line "N passed, N failed"; exits nonzero if anything failed.
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
check "tcplog.ko has the vermagic of Debian's own modules" same_vermagic
check "tcplog.ko is licensed GPL" license_gpl
check "tcplog.ko names itself, its authors and what it does" metadata

echo "== VM: the in-kernel suite"
log=$(mktemp)
"$repo/qemu-test/run-vm.sh" test | tee "$log"
read -r p f < <(tail -n 1 "$log" | awk '/^[0-9]+ passed, [0-9]+ failed$/ { print $1, $3; next } { print 0, 1 }')
passed=$((passed + p))
failed=$((failed + f))
rm -f "$log"
finish
