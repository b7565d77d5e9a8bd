#!/bin/sh
# Assembles the VM's initramfs. Runs inside the build root (scripts/in-root.sh), with the
# repository at /src, so that every binary and library comes from Debian 13, like the kernel.
#
# Usage: assemble.sh KVER MODDIR OUT [KO]
#   KVER: the kernel's release; MODDIR: its lib/modules/KVER (with modules.builtin: a module built
#   into the kernel is not copied); OUT: where initramfs.cpio.gz goes; KO: the tcplog.ko to carry
#   (default /src/tcplog.ko, the stock kernel's).
set -eu
KVER=$1
MODDIR=$2
OUT=$3
KO=${4:-/src/tcplog.ko}
stage=$OUT/initramfs
rel=/src/target/buildroot/release

# Kernel modules the tests need, from the kernel's modules package, with their dependencies
# (nf_conntrack and its netlink interface: the benchmarks' conntrack peer; nf_tables: their floor;
# tcp_diag: what ss asks).
MODULES="veth nf_conntrack_netlink nf_tables tcp_diag"

rm -rf "$stage"
mkdir -p "$stage"
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin usr/local/bin lib lib64 proc sys dev tmp etc root run \
	lib/tcplog "lib/modules/$KVER" usr/share/tcplog

# Copies an executable and the shared libraries it needs.
copy_bin() {
	install -D -m 0755 "$1" "$stage$2"
	ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
		[ -e "$stage$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
	done
}

copy_bin "$rel/tcplog" /usr/bin/tcplog
copy_bin "$rel/tcplog-vm-tests" /usr/bin/tcplog-vm-tests
copy_bin /usr/bin/ip /usr/local/bin/ip
copy_bin /usr/bin/ss /usr/local/bin/ss
copy_bin /usr/bin/tcpdump /usr/local/bin/tcpdump
copy_bin /usr/sbin/conntrack /usr/local/bin/conntrack
# Real programs for the tests of issue #10: curl (non-blocking connects, --mptcp) and socat.
copy_bin /usr/bin/curl /usr/local/bin/curl
copy_bin "$(readlink -f /usr/bin/socat)" /usr/local/bin/socat
# The IPFIX collector of the export test (issue #13): nfdump's nfcapd, and nfdump to read its files.
copy_bin /usr/bin/nfcapd /usr/local/bin/nfcapd
copy_bin /usr/bin/nfdump /usr/local/bin/nfdump
# libfixbuf's ipfixDump: decodes what the exporter sends over TCP, which nfcapd does not receive.
copy_bin /usr/bin/ipfixDump /usr/local/bin/ipfixDump
install -m 0644 "$KO" lib/tcplog/tcplog.ko

# busybox provides everything else; real tools in /usr/local/bin come first in PATH.
cp /bin/busybox bin/busybox
for applet in $(/bin/busybox --list-full); do
	[ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done

for m in $MODULES; do
	modprobe --show-depends -d "${MODDIR%/lib/modules/$KVER}" -S "$KVER" "$m" |
		awk '$1 == "insmod" { print $2 }' | while read -r ko; do
		dst=lib/modules/$KVER/${ko#"$MODDIR"/}
		mkdir -p "$(dirname "$dst")"
		case "$ko" in
		*.ko.xz) xz -dc "$ko" >"${dst%.xz}" ;;
		*.ko.zst) zstd -qdc "$ko" >"${dst%.zst}" ;;
		*.ko.gz) gzip -dc "$ko" >"${dst%.gz}" ;;
		*) cp "$ko" "$dst" ;;
		esac
	done
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
	if [ -e "$MODDIR/$f" ]; then cp "$MODDIR/$f" "lib/modules/$KVER/"; else : >"lib/modules/$KVER/$f"; fi
done
depmod -b "$stage" "$KVER"

install -m 0755 /src/qemu-test/image/init init
install -m 0755 /src/qemu-test/image/demo.sh usr/share/tcplog/demo.sh
# tcpdump drops to its own user, even to read a file.
printf 'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:100:100::/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >etc/passwd
printf 'root:x:0:\ntcpdump:x:100:\nnogroup:x:65534:\n' >etc/group
echo tcplog-vm >etc/hostname

find . | sort | cpio -o -H newc --quiet | gzip -1 >"$OUT/initramfs.cpio.gz"
echo "initramfs: $(du -h "$OUT/initramfs.cpio.gz" | cut -f1) ($(find . -type f | wc -l) files)"
