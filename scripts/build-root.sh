#!/usr/bin/env bash
# Creates (idempotently) the Debian build root that tcplog is built in for one Debian kernel, and
# prepares that kernel's headers tree so that out-of-tree Rust modules build against it.
#
# Usage: scripts/build-root.sh [--resolve] [KERNEL]
#   KERNEL  SUITE/FLAVOUR[@SERIES][=VERSION]; default backports/amd64 (the stock kernel).
#           SUITE: backports (Debian 13's trixie-backports, built in a trixie root) or unstable
#           (sid, built in a sid root: its kernels are built with sid's rustc and gcc).
#           FLAVOUR: amd64, cloud-amd64 (rt-amd64 resolves, but Kbuild refuses PREEMPT_RT).
#           SERIES: 7.3, 7.2, ...: the newest upload of that series (default: the newest series
#           that has source, headers, binary and modules of one version). VERSION: exactly that
#           package version (e.g. 7.2.11-1~bpo13+1).
#   Each run asks the archive again: a newer upload of the kernel is picked up as it appears.
#   --resolve: only print what KERNEL resolves to ("VERSION RELEASE SERIES"), and stop.
#
# The headers package lacks the Rust metadata (rust/*.rmeta, the proc-macro .so files and
# scripts/target.json), so this rebuilds it from the same kernel's source with Debian's own config,
# with the compiler and rustc the kernel's config names (refusing if the root's differ), checks it
# against Debian's Module.symvers and installs it into the headers tree.
#
# Output: the path of an environment file, printed on the last line of stdout as KENV=<path>, that
# records BUILD_ROOT (the kernel's build root), KVER (the kernel's ABI release), KPKG_VERSION, KSPEC,
# KSRC_TARBALL, the vmlinuz, and the modules unpacked into the trixie root (IMAGE_ROOT: where the
# VM image is assembled, with the tool built there).
#
# The cache lives outside the clone (TCPLOG_CACHE, default /var/cache/tcplog), so CI on the same
# machine reuses it; stamps make every stage run at most once per kernel version.
set -euo pipefail

CACHE=${TCPLOG_CACHE:-/var/cache/tcplog}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
JOBS=$(nproc)
RESOLVE_ONLY=0
if [ "${1:-}" = --resolve ]; then
	RESOLVE_ONLY=1
	shift
fi
SPEC=${1:-backports/amd64}
# The trixie root: the stock kernel's, and where the tool is built and the VM image assembled.
IMAGE_ROOT=$CACHE/root

# What every build root holds: what kbuild and the kernel's Rust build need (the compiler the
# kernel's config names is added once the headers say which), clippy (for `make CLIPPY=1`), and
# cargo for the userspace crates.
PKGS_BUILD="rustc rust-src cargo bindgen libclang-dev make bc flex bison libelf-dev libssl-dev
	xz-utils zstd cpio kmod python3 pahole ca-certificates rust-clippy"
# What the trixie root holds besides: Debian 13's gcc-14, the stock kernel's; what the VM image
# takes from it (conntrack: the benchmarks' peer; nfdump: nfcapd, the IPFIX collector of the
# export test; libfixbuf-tools: ipfixDump, to read what the tool sends). bpftrace and perf, about 100 MB, are installed by qemu-test/image/peers.sh when a
# benchmark or profile first needs them. Packaging (scripts/deb.sh): dpkg-dev for dpkg-shlibdeps,
# lintian checks the .debs, systemd's systemd-analyze the unit, openssl makes the throwaway key of
# the signing check.
PKGS_IMAGE="gcc-14 busybox-static iproute2 tcpdump conntrack curl socat nfdump
	libfixbuf-tools dpkg-dev lintian systemd openssl"

log() { printf '[build-root] %s\n' "$*" >&2; }
die() { printf '[build-root] error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" as a timed stage: prints how long it took.
stage() {
	local name=$1 start end
	shift
	start=$(date +%s)
	log "stage '$name' ..."
	"$@"
	end=$(date +%s)
	log "stage '$name' took $((end - start)) s"
}

kspec_re='^(backports|unstable)/([a-z0-9-]+)(@([0-9]+\.[0-9]+))?(=([^ ]+))?$'
[[ $SPEC =~ $kspec_re ]] || die "kernel '$SPEC' is not SUITE/FLAVOUR[@SERIES][=VERSION] (e.g. backports/amd64, unstable/cloud-amd64, backports/amd64@7.2, backports/amd64=7.2.11-1~bpo13+1)"
KSUITE=${BASH_REMATCH[1]}
KFLAVOUR=${BASH_REMATCH[2]}
KSERIES_WANTED=${BASH_REMATCH[4]}
KVERSION_WANTED=${BASH_REMATCH[6]}
case "$KSUITE" in
backports)
	SUITE=trixie
	SUITES="trixie trixie-updates trixie-backports"
	ROOT=$IMAGE_ROOT
	PKGS="$PKGS_BUILD $PKGS_IMAGE"
	;;
unstable)
	SUITE=sid
	SUITES=sid
	ROOT=$CACHE/root-sid
	PKGS=$PKGS_BUILD
	;;
esac
if [ -n "$KVERSION_WANTED" ]; then
	v_series=$(sed -E 's/^([0-9]+\.[0-9]+).*/\1/' <<<"$KVERSION_WANTED")
	[ -z "$KSERIES_WANTED" ] || [ "$KSERIES_WANTED" = "$v_series" ] || die "kernel '$SPEC': version $KVERSION_WANTED is not of series $KSERIES_WANTED"
	KSERIES_WANTED=$v_series
fi

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
for t in debootstrap chroot; do
	command -v "$t" >/dev/null || die "'$t' is not installed (apt-get install debootstrap)"
done

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

mount_root() {
	mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
}
umount_root() {
	mountpoint -q "$ROOT/proc" && umount "$ROOT/proc" || true
}

ROOT_NAME=${ROOT##*/}
make_base() {
	rm -rf "$ROOT"
	mkdir -p "$CACHE"
	debootstrap --variant=minbase "$SUITE" "$ROOT.tmp" "$MIRROR" >"$CACHE/$ROOT_NAME-debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/$ROOT_NAME-debootstrap.log" >&2; die "debootstrap of $SUITE failed (log: $CACHE/$ROOT_NAME-debootstrap.log)"; }
	rm -f "$ROOT.tmp/etc/apt/sources.list"
	mv "$ROOT.tmp" "$ROOT"
	touch "$ROOT/.tcplog-base"
}

# Every kernel's image and modules are unpacked into the trixie root, where the VM image is
# assembled: that root comes first.
if [ "$ROOT" != "$IMAGE_ROOT" ] && [ ! -e "$IMAGE_ROOT/.tcplog-base" ]; then
	"$0" backports/amd64 >/dev/null
fi
if [ ! -e "$ROOT/.tcplog-base" ]; then
	rm -rf "$ROOT.tmp"
	stage "debootstrap $SUITE" make_base
else
	log "reusing build root $ROOT"
fi

# Written on every run, so that a change here reaches roots made before. A mirror that serves a
# frozen copy of the archive (this project's package registry is one) has suites whose Release
# file is past its Valid-Until: what is signed is still checked, the date is not.
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITES
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
Check-Valid-Until: no
SRC

mount_root
trap umount_root EXIT

stage apt-update in_root apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null

# A package whose maintainer scripts start a daemon (nfdump starts nfcapd) must not start it in the
# build root: Debian's policy-rc.d protocol, where exit status 101 forbids the action.
deny_services() {
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
}
deny_services

apt_install() {
	in_root apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "$@" >>"$CACHE/$ROOT_NAME-apt.log" 2>&1 ||
		{ tail -20 "$CACHE/$ROOT_NAME-apt.log" >&2; die "installing $* in $ROOT failed (log: $CACHE/$ROOT_NAME-apt.log)"; }
}
: >"$CACHE/$ROOT_NAME-apt.log"
# qemu-test/image/peers.sh (benchmarks, profile) takes perf from backports, and with it
# backports' elfutils: libelf-dev must then come from there too (apt would not downgrade the
# library to match Debian 13's libelf-dev, and the list would not install).
if [ "$SUITE" = trixie ] && in_root dpkg-query -W -f '${Version}' libelf1t64 2>/dev/null | grep -q '~bpo'; then
	PKGS=$(sed 's|\blibelf-dev\b|libelf-dev/trixie-backports|' <<<"$PKGS")
fi
# shellcheck disable=SC2086 # the list is split on purpose
stage packages apt_install $PKGS

versions() { in_root apt-cache madison "$1" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | sort -urV; }
# The kernel SPEC names: the newest version (or exactly KVERSION_WANTED) of the newest series (or
# KSERIES_WANTED) whose source, headers, binary and modules packages share one version. Prints
# "VERSION ABI SERIES".
resolve_kernel() {
	local series v abi ok p
	if [ -n "$KSERIES_WANTED" ]; then
		series=$KSERIES_WANTED
	else
		series=$(in_root apt-cache pkgnames linux-source- | sed -n 's/^linux-source-\([0-9]*\.[0-9]*\)$/\1/p' | sort -rV)
	fi
	for s in $series; do
		for v in $(versions "linux-source-$s"); do
			[ -z "$KVERSION_WANTED" ] || [ "$v" = "$KVERSION_WANTED" ] || continue
			for abi in $(in_root apt-cache pkgnames "linux-headers-$s." | sed -n "s/^linux-headers-\\($s\\.[0-9]*+deb[0-9]*-$KFLAVOUR\\)\$/\\1/p" | sort -rV); do
				ok=1
				for p in linux-headers-$abi linux-binary-$abi linux-modules-$abi; do
					versions "$p" | grep -qxF "$v" || { ok=0; break; }
				done
				if [ $ok = 1 ]; then
					echo "$v $abi $s"
					return 0
				fi
			done
		done
	done
	return 1
}
read -r KPKG_VERSION KVER KSERIES < <(resolve_kernel) ||
	die "kernel '$SPEC': no Debian kernel of that flavour has source, headers, binary and modules packages of one version in $SUITES"
log "kernel $SPEC: $KVER (packages version $KPKG_VERSION)"
if [ "$RESOLVE_ONLY" = 1 ]; then
	echo "$KPKG_VERSION $KVER $KSERIES"
	exit 0
fi

KDIR=/usr/src/linux-headers-$KVER
KSRC_TARBALL=/usr/src/linux-source-$KSERIES.tar.xz
# The kernel's binary and modules packages are unpacked inside the trixie root, so that kmod can
# read them (depmod, modinfo) and the VM image be assembled from them.
KIMAGE_IN_ROOT=/opt/tcplog-kernel/$KVER
KIMAGE=$IMAGE_ROOT$KIMAGE_IN_ROOT
KCACHE=$CACHE/kernel-$KVER
STAMP=$ROOT/.tcplog-kernel-$KVER
CONFIG=$ROOT$KDIR/.config

config_value() { sed -n "s/^$1=\"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}\$/\\1/p" "$CONFIG"; }

install_kernel_pkgs() {
	apt_install "linux-source-$KSERIES=$KPKG_VERSION" "linux-headers-$KVER=$KPKG_VERSION"
	[ "$(config_value CONFIG_RUST)" = y ] ||
		die "kernel $KVER has no CONFIG_RUST: no Rust module can load there"
	# The compiler the kernel was built with (its config names it: x86_64-linux-gnu-gcc-N).
	local cc
	cc=$(config_value CONFIG_CC_VERSION_TEXT | awk '{ print $1 }')
	case "$cc" in x86_64-linux-gnu-gcc-[0-9]*) apt_install "gcc-${cc##*-}" ;; esac
	# The binary and modules packages are unpacked, not installed: no build root boots.
	rm -rf "$KIMAGE" && mkdir -p "$KIMAGE"
	in_root sh -euc "
		rm -rf /tmp/tcplog-kernel && mkdir /tmp/tcplog-kernel && cd /tmp/tcplog-kernel
		apt-get download -q -o APT::Sandbox::User=root linux-binary-$KVER=$KPKG_VERSION linux-modules-$KVER=$KPKG_VERSION
	" >/dev/null
	local d
	for d in "$ROOT"/tmp/tcplog-kernel/*.deb; do dpkg-deb -x "$d" "$KIMAGE"; done
	rm -rf "$ROOT/tmp/tcplog-kernel"
	chroot "$IMAGE_ROOT" depmod -b "$KIMAGE_IN_ROOT/usr" "$KVER" 2>/dev/null
}

# The build root's compilers must be the kernel's: Rust metadata is only read by the rustc that
# wrote it, and the kernel's build refuses a rustc other than its config's. Unstable moves on: when
# its rustc is newer than the one its current kernel was built with, this says so and stops.
check_toolchain() {
	local want have cc
	want=$(config_value CONFIG_RUSTC_VERSION_TEXT)
	have=$(in_root rustc --version)
	[ "$want" = "$have" ] || die "kernel $KVER was built with '$want', the $SUITE root has '$have'"
	cc=$(config_value CONFIG_CC_VERSION_TEXT | awk '{ print $1 }')
	in_root sh -c "command -v $cc" >/dev/null || die "kernel $KVER was built with $cc, which the $SUITE root lacks"
	want=$(config_value CONFIG_BINDGEN_VERSION_TEXT)
	have=$(in_root bindgen --version 2>/dev/null | head -1)
	[ "$want" = "$have" ] || log "note: kernel $KVER was built with '$want', the $SUITE root has '$have'"
	KCC=$cc
}

prepare_rust() {
	in_root sh -euc "
		rm -rf /build/linux && mkdir -p /build/linux
		tar -C /build/linux --strip-components=1 -xf $KSRC_TARBALL
		cp $KDIR/.config /build/linux/.config
		cd /build/linux
		make -s CC=$KCC olddefconfig
		make -s -j$JOBS CC=$KCC modules_prepare
	" >"$CACHE/prepare-$KVER.log" 2>&1 || { tail -30 "$CACHE/prepare-$KVER.log" >&2; die "modules_prepare of the kernel source failed (log: $CACHE/prepare-$KVER.log)"; }
}

check_symvers() {
	local exports=$ROOT/build/linux/rust/exports_kernel_generated.h symvers=$ROOT$KDIR/Module.symvers
	[ -s "$exports" ] || die "the rebuilt kernel crate exported nothing ($exports missing)"
	local missing
	missing=$(sed -n 's/^EXPORT_SYMBOL_RUST_GPL(\(.*\));$/\1/p' "$exports" | sort -u |
		comm -23 - <(awk '{print $2}' "$symvers" | sort -u))
	local n_exp
	n_exp=$(grep -c '^EXPORT_SYMBOL_RUST_GPL' "$exports")
	if [ -n "$missing" ]; then
		printf '%s\n' "$missing" | head -10 >&2
		die "$(printf '%s\n' "$missing" | wc -l) of $n_exp symbols of the rebuilt kernel crate are not in Debian's Module.symvers: the rebuilt Rust metadata does not match the distribution kernel"
	fi
	log "all $n_exp symbols exported by the rebuilt kernel crate are in Debian's Module.symvers"
}

install_rust_meta() {
	mkdir -p "$ROOT$KDIR/rust"
	cp "$ROOT"/build/linux/rust/*.rmeta "$ROOT"/build/linux/rust/*.so "$ROOT$KDIR/rust/"
	cp "$ROOT/build/linux/scripts/target.json" "$ROOT$KDIR/scripts/"
	# Kept for reading: the generated bindings say what `kernel::bindings` offers, and the source's
	# rust/Makefile (which the headers tree lacks) is what scripts/build.sh checks Kbuild against.
	mkdir -p "$KCACHE/reference"
	cp "$ROOT"/build/linux/rust/bindings/bindings_generated.rs "$KCACHE/reference/"
	cp "$ROOT"/build/linux/rust/Makefile "$KCACHE/reference/rust-Makefile"
	rm -rf "$ROOT/build/linux"
}

# Each stage runs once per kernel version; its stamp records that it finished.
once() {
	local name=$1
	shift
	if [ -e "$STAMP.$name" ]; then
		log "stage '$name' done before"
		return
	fi
	stage "$name" "$@"
	touch "$STAMP.$name"
}
if [ ! -e "$STAMP" ]; then
	once install-kernel-packages install_kernel_pkgs
	check_toolchain
	once rust-metadata prepare_rust
	once check-symvers check_symvers
	once install-rust-metadata install_rust_meta
	rm -f "$STAMP".*
	touch "$STAMP"
else
	log "reusing prepared kernel $KVER"
fi

VMLINUZ=
for f in "$KIMAGE/usr/lib/modules/$KVER/vmlinuz" "$KIMAGE/boot/vmlinuz-$KVER"; do
	[ -f "$f" ] && { VMLINUZ=$f; break; }
done
[ -n "$VMLINUZ" ] || die "no vmlinuz in the unpacked binary package"
MODDIR=$KIMAGE/usr/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no modules directory in the unpacked modules package"

ENVF=$CACHE/kernel-$KVER.env
cat >"$ENVF" <<ENV
BUILD_ROOT=$ROOT
IMAGE_ROOT=$IMAGE_ROOT
KSPEC=$SPEC
KSUITE=$KSUITE
KFLAVOUR=$KFLAVOUR
KSERIES=$KSERIES
KVER=$KVER
KPKG_VERSION=$KPKG_VERSION
KSRC_TARBALL=$KSRC_TARBALL
KDIR_IN_ROOT=$KDIR
VMLINUZ=$VMLINUZ
MODDIR=$MODDIR
MODDIR_IN_ROOT=$KIMAGE_IN_ROOT/usr/lib/modules/$KVER
ENV
log "kernel $KVER ready; environment in $ENVF"
echo "KENV=$ENVF"
