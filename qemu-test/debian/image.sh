#!/usr/bin/env bash
# Makes (once per recipe) the disk image of the Debian lane: a Debian 13 root file system made
# with debootstrap, systemd as init, Debian's own 7.3 kernel package installed (the module
# package depends on it, and its initramfs loads virtio and ext4), nginx and curl for traffic,
# nfdump for an IPFIX collector, and the lane's harness unit, which runs the test script a second
# disk brings (lane.sh).
#
# Usage: qemu-test/debian/image.sh KENV
# The image is cached under $TCPLOG_CACHE/debian-vm/KEY/, where KEY hashes this script, the
# harness files, the suite and the kernel package's version: a change to any of them makes a new
# one (older ones are removed). Prints DEBIAN_IMAGE=<dir> on its last line: disk.raw (ext4, the
# root file system, no partition table) and initrd.img (the image's own initramfs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kenv=${1:?usage: image.sh KENV}
# shellcheck source=/dev/null
. "$kenv"
CACHE=${TCPLOG_CACHE:-/var/cache/tcplog}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
SIZE=3G
# What an administrator's small server has, and what the lane uses: nginx and curl for traffic,
# kmod and udev for the module, apt to install the packages, nfdump (nfcapd) as the collector
# tcplog-export.service sends to.
PKGS=systemd-sysv,udev,kmod,apt,nginx,curl,iproute2,procps,e2fsprogs,nfdump

log() { printf '[debian-image] %s\n' "$*" >&2; }
die() { printf '[debian-image] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

key=$({
	cat "$0" "$here/tcplog-lane" "$here/tcplog-lane.service"
	echo "$SUITE $MIRROR $KVER $KPKG_VERSION $SIZE"
} | sha256sum | cut -c1-12)
dir=$CACHE/debian-vm/$key
if [ -e "$dir/.done" ]; then
	log "reusing $dir"
	echo "DEBIAN_IMAGE=$dir"
	exit 0
fi

start=$(date +%s)
rm -rf "$CACHE/debian-vm"
mkdir -p "$dir"
rootfs=$dir/rootfs
mounted=
cleanup() {
	if [ -n "$mounted" ]; then
		umount "$rootfs/proc" 2>/dev/null || true
		umount "$rootfs/dev/pts" "$rootfs/dev" 2>/dev/null || true
	fi
}
trap cleanup EXIT

log "debootstrap $SUITE with systemd ..."
nice -n 19 debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$rootfs" "$MIRROR" \
	>"$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log" >&2; die "debootstrap failed (log: $dir/debootstrap.log)"; }
log "debootstrap took $(($(date +%s) - start)) s"

cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -f "$rootfs/etc/apt/sources.list"
echo tcplog-debian >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 tcplog-debian\n::1 localhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
# The root has no password: only the serial console and the harness use the machine.
chroot "$rootfs" passwd -d root >/dev/null

mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
mount -t devpts devpts "$rootfs/dev/pts"
mounted=1
log "installing linux-image-$KVER ($KPKG_VERSION) ..."
kstart=$(date +%s)
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
	sh -euc "
		apt-get update -q
		nice -n 19 apt-get install -y -q --no-install-recommends linux-image-$KVER=$KPKG_VERSION \
			linux-base/$SUITE-backports initramfs-tools
		apt-get clean
	" >"$dir/kernel.log" 2>&1 || { tail -20 "$dir/kernel.log" >&2; die "installing the kernel failed (log: $dir/kernel.log)"; }
log "the kernel package took $(($(date +%s) - kstart)) s"
# nfdump's own service runs a collector at boot; the lane starts the one it needs itself.
chroot "$rootfs" systemctl disable --quiet nfdump.service
cleanup
mounted=

install -m 0755 "$here/tcplog-lane" "$rootfs/usr/local/sbin/tcplog-lane"
install -m 0644 "$here/tcplog-lane.service" "$rootfs/etc/systemd/system/tcplog-lane.service"
ln -sf /etc/systemd/system/tcplog-lane.service "$rootfs/etc/systemd/system/multi-user.target.wants/tcplog-lane.service"

cp "$rootfs/boot/initrd.img-$KVER" "$dir/initrd.img"
rm -f "$dir/disk.raw"
truncate -s "$SIZE" "$dir/disk.raw"
mkfs.ext4 -q -F -L tcplog-debian -d "$rootfs" "$dir/disk.raw" ||
	die "mkfs.ext4 -d failed"
rm -rf "$rootfs"
touch "$dir/.done"
log "image made in $(($(date +%s) - start)) s: $dir ($(du -sh "$dir/disk.raw" | cut -f1) used)"
echo "DEBIAN_IMAGE=$dir"
