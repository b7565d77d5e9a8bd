#!/bin/sh
# Builds the peers' initramfs overlay, which run-vm.sh appends to the VM's initramfs in bench and
# profile modes only (the kernel unpacks concatenated cpio archives in turn): bpftrace with
# Debian's tcplife.bt, nft for the floor, and perf for the profile mode when the build root has it. bpftrace and its
# LLVM weigh about 200 MB, too much to carry into every test run. Runs inside the build root
# (scripts/in-root.sh), like assemble.sh, and reuses the archive while the packages are unchanged.
#
# Usage: peers.sh OUT   (writes OUT/peers.cpio.gz)
set -eu
OUT=$1
stage=$OUT/peers
archive=$OUT/peers.cpio.gz

# The peers come from Debian, installed in the build root the first time they are needed (perf
# is the 7.3 kernel's, from backports). It brings backports' elfutils, so the root's libelf-dev
# is taken from there in the same step: left at Debian 13's version, apt would remove it
# (scripts/build-root.sh then installs it from backports too).
if ! command -v bpftrace >/dev/null || ! command -v nft >/dev/null || ! dpkg-query -W linux-perf >/dev/null 2>&1; then
	echo "peers: installing bpftrace, nftables and linux-perf in the build root"
	backports="$(. /etc/os-release && echo "$VERSION_CODENAME")-backports"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		bpftrace nftables "linux-perf/$backports" "libelf-dev/$backports" >/dev/null
fi

# What goes in; the archive is rebuilt when this line or this script changes.
key="$(dpkg-query -W -f '${Package}=${Version} ' bpftrace nftables linux-perf 2>/dev/null || true)$(md5sum "$0" | cut -d' ' -f1)"
if [ -s "$archive" ] && [ "$(cat "$archive.key" 2>/dev/null)" = "$key" ]; then
	echo "peers: reusing $(du -h "$archive" | cut -f1) archive"
	exit 0
fi

start=$(date +%s)
rm -rf "$stage" "$archive" "$archive.key"
mkdir -p "$stage"

# Copies an executable and the shared libraries it needs (as assemble.sh does).
copy_bin() {
	install -D -m 0755 "$1" "$stage$2"
	ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
		[ -e "$stage$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
	done
}

command -v bpftrace >/dev/null || { echo "peers: bpftrace is not in the build root (scripts/build-root.sh installs it)" >&2; exit 1; }
copy_bin "$(command -v bpftrace)" /usr/local/bin/bpftrace
# Debian installs the bpftrace tools as /usr/sbin/NAME.bt.
install -D -m 0644 /usr/sbin/tcplife.bt "$stage/usr/share/tcplog/tcplife.bt"

# nft, for the benchmarks' floor (empty base chains at tcplog's netfilter hooks).
copy_bin /usr/sbin/nft /usr/local/bin/nft

# perf, for the profile mode (Debian's linux-perf: /usr/bin/perf itself, a wrapper it diverts).
if dpkg-query -W linux-perf >/dev/null 2>&1; then
	copy_bin /usr/bin/perf /usr/local/bin/perf
fi

cd "$stage"
find . | sort | cpio -o -H newc --quiet | gzip -1 >"$archive"
echo "$key" >"$archive.key"
echo "peers: $(du -h "$archive" | cut -f1) archive ($(du -sh . | cut -f1) unpacked, $(find . -type f | wc -l) files) in $(($(date +%s) - start)) s"
