#!/usr/bin/env bash
# Creates (idempotently) the Debian 13 build root that tcplog is built in, and prepares the Debian
# 7.3 kernel's headers tree so that out-of-tree Rust modules build against it.
#
# The headers package lacks the Rust metadata (rust/*.rmeta, the proc-macro .so files and
# scripts/target.json), so this rebuilds it from the same kernel's source with Debian's own config,
# checks it against Debian's Module.symvers and installs it into the headers tree.
#
# Output: the path of an environment file, printed on the last line of stdout as KENV=<path>, that
# records BUILD_ROOT, KVER (the kernel's ABI release), KPKG_VERSION and the vmlinuz and modules paths.
#
# The cache lives outside the clone (TCPLOG_CACHE, default /var/cache/tcplog), so CI on the same
# machine reuses it; stamps make every stage run at most once per kernel version.
set -euo pipefail

CACHE=${TCPLOG_CACHE:-/var/cache/tcplog}
ROOT=$CACHE/root
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
JOBS=$(nproc)
# What the build root holds: the kernel's toolchain (Debian 13's rustc is the one the kernel was
# built with) and its clippy (for `make CLIPPY=1`), cargo for the userspace crates, and what
# the VM image takes from it (conntrack: the benchmarks' peer; nfdump: nfcapd, the IPFIX
# collector of the export test; libfixbuf-tools: ipfixDump, to read what the tool sends).
# bpftrace and perf, about 100 MB, are installed by qemu-test/image/peers.sh when a benchmark or
# profile first needs them. Packaging (scripts/deb.sh): dpkg-dev for dpkg-shlibdeps, lintian
# checks the .debs, systemd's systemd-analyze the unit, openssl makes the throwaway key of the
# signing check.
PKGS="rustc rust-src cargo bindgen libclang-dev gcc-14 make bc flex bison libelf-dev libssl-dev
	xz-utils cpio kmod python3 pahole busybox-static iproute2 tcpdump ca-certificates conntrack
	curl socat rust-clippy nfdump libfixbuf-tools dpkg-dev lintian systemd openssl"

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

make_base() {
	rm -rf "$ROOT"
	mkdir -p "$CACHE"
	debootstrap --variant=minbase "$SUITE" "$ROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
	cat >"$ROOT.tmp/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates $SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	rm -f "$ROOT.tmp/etc/apt/sources.list"
	mv "$ROOT.tmp" "$ROOT"
	touch "$ROOT/.tcplog-base"
}

if [ ! -e "$ROOT/.tcplog-base" ]; then
	rm -rf "$ROOT.tmp"
	stage debootstrap make_base
else
	log "reusing build root $ROOT"
fi

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

install_pkgs() {
	# shellcheck disable=SC2086 # the list is split on purpose
	in_root apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $PKGS >"$CACHE/apt-packages.log" 2>&1 ||
		{ tail -20 "$CACHE/apt-packages.log" >&2; die "installing the build root's packages failed"; }
}
stage packages install_pkgs

# The newest 7.3 kernel whose source, headers, binary and modules packages share one version.
resolve_kernel() {
	local v abi
	for v in $(in_root apt-cache madison linux-source-7.3 | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -rV); do
		for abi in $(in_root apt-cache search --names-only '^linux-headers-7\.3\.[0-9]+\+deb[0-9]+-amd64$' | awk '{print $1}' | sed 's/^linux-headers-//' | sort -rV); do
			local ok=1 p
			for p in linux-headers-$abi linux-binary-$abi linux-modules-$abi; do
				in_root apt-cache madison "$p" | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$v" || { ok=0; break; }
			done
			if [ $ok = 1 ]; then
				echo "$v $abi"
				return 0
			fi
		done
	done
	return 1
}
read -r KPKG_VERSION KVER < <(resolve_kernel) || die "no Debian 7.3 kernel has source, headers, binary and modules packages of one version"
log "kernel: $KVER (packages version $KPKG_VERSION)"

KDIR=/usr/src/linux-headers-$KVER
# The kernel's binary and modules packages are unpacked inside the root, so the root's kmod can
# read them (depmod, modinfo).
KIMAGE_IN_ROOT=/opt/tcplog-kernel/$KVER
KIMAGE=$ROOT$KIMAGE_IN_ROOT
KCACHE=$CACHE/kernel-$KVER
STAMP=$ROOT/.tcplog-kernel-$KVER

install_kernel_pkgs() {
	in_root apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "linux-source-7.3=$KPKG_VERSION" "linux-headers-$KVER=$KPKG_VERSION" >"$CACHE/apt-kernel.log" 2>&1 ||
		{ tail -20 "$CACHE/apt-kernel.log" >&2; die "installing the kernel packages failed"; }
	# The binary and modules packages are unpacked, not installed: the build root boots nothing.
	rm -rf "$KIMAGE" && mkdir -p "$KIMAGE"
	in_root sh -euc "
		cd /tmp && rm -f linux-binary-*.deb linux-modules-*.deb
		apt-get download -q linux-binary-$KVER=$KPKG_VERSION linux-modules-$KVER=$KPKG_VERSION
		for d in linux-binary-*.deb linux-modules-*.deb; do dpkg-deb -x \$d $KIMAGE_IN_ROOT; done
		rm -f linux-binary-*.deb linux-modules-*.deb
		depmod -b $KIMAGE_IN_ROOT/usr $KVER
	" >/dev/null
}

prepare_rust() {
	local src=/usr/src/linux-source-7.3
	in_root sh -euc "
		rm -rf /build/linux && mkdir -p /build/linux
		tar -C /build/linux --strip-components=1 -xf $src.tar.xz
		cp $KDIR/.config /build/linux/.config
		cd /build/linux
		make -s CC=x86_64-linux-gnu-gcc-14 olddefconfig
		make -s -j$JOBS CC=x86_64-linux-gnu-gcc-14 modules_prepare
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
	# The generated bindings are kept for reading: they say what `kernel::bindings` offers.
	mkdir -p "$KCACHE/reference"
	cp "$ROOT"/build/linux/rust/bindings/bindings_generated.rs "$KCACHE/reference/"
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
KVER=$KVER
KPKG_VERSION=$KPKG_VERSION
KDIR_IN_ROOT=$KDIR
VMLINUZ=$VMLINUZ
MODDIR=$MODDIR
MODDIR_IN_ROOT=$KIMAGE_IN_ROOT/usr/lib/modules/$KVER
ENV
log "kernel $KVER ready; environment in $ENVF"
echo "KENV=$ENVF"
