#!/usr/bin/env bash
# Assembles the two binary packages with dpkg-deb and checks them with lintian. Runs inside the
# build root (scripts/in-root.sh; scripts/deb.sh is the driver), with the repository at /src and
# the module and the tool already built.
#
# Usage: assemble.sh KVER KPKG_VERSION KO OUT [KVER KPKG_VERSION KO]...
#   KVER: the kernel's release (7.3.4+deb13-amd64); KPKG_VERSION: its packages' version;
#   KO: the tcplog.ko to ship (stripped of debug information already if it is signed);
#   OUT: where the .debs go. Each further kernel gets a modules package of its own.
# Prints the paths of the packages it made, one a line.
set -euo pipefail
kver=${1:?usage: assemble.sh KVER KPKG_VERSION KO OUT}
kpkg_version=${2:?}
ko=${3:?}
out=${4:?}
here=/src/packaging/debian
tool=/src/target/buildroot/release/tcplog
work=/src/target/deb/stage

die() { printf '[deb] error: %s\n' "$*" >&2; exit 1; }
[ -x "$tool" ] || die "$tool is not built"
[ -f "$ko" ] || die "$ko is not built"

# One version, the tool's; the changelog must agree (and gives the maintainer and the date).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' /src/userspace-tool/Cargo.toml | head -n 1)
changelog_version=$(sed -n '1s/^tcplog (\([^)]*\)).*/\1/p' "$here/changelog")
[ "$version" = "$changelog_version" ] ||
	die "userspace-tool/Cargo.toml says version $version, packaging/debian/changelog $changelog_version: add a changelog entry"
maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$here/changelog" | head -n 1)
date=$(sed -n 's/^ -- .*>  \(.*\)$/\1/p' "$here/changelog" | head -n 1)
SOURCE_DATE_EPOCH=$(date -d "$date" +%s)
export SOURCE_DATE_EPOCH
abi=$(sed -n 's/^pub const ABI_VERSION: u32 = \([0-9]*\);$/\1/p' /src/ctl/src/abi/mod.rs)
[ -n "$abi" ] || die "no ABI_VERSION in ctl/src/abi/mod.rs"

rm -rf "$work"
mkdir -p "$work" "$out"

# Common to both: the copyright file and the changelog. The tool's copyright also lists, in its
# header's comment, the crates linked into it with their licenses, from Cargo's own metadata.
docs() {
	local pkg=$1 root=$2 crates=${3:-}
	local doc=$root/usr/share/doc/$pkg
	install -d "$doc"
	if [ -n "$crates" ]; then
		awk -v list="$crates" '
			!done && $0 == "" {
				print " ."
				print " Rust crates statically linked into /usr/bin/tcplog (crate version: license):"
				while ((getline line < list) > 0) print " " line
				done = 1
			}
			{ print }' "$here/copyright" >"$doc/copyright"
		chmod 0644 "$doc/copyright"
	else
		install -m 0644 "$here/copyright" "$doc/copyright"
	fi
	gzip -9n <"$here/changelog" >"$doc/changelog.gz"
	chmod 0644 "$doc/changelog.gz"
}

# md5sums, Installed-Size and the archive itself.
build_deb() {
	local root=$1 name=$2
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
		xargs -0 -r md5sum >DEBIAN/md5sums)
	chmod 0644 "$root/DEBIAN/md5sums"
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	dpkg-deb --root-owner-group -Zxz --build "$root" "$out/$name" >/dev/null
	echo "$out/$name"
}

installed_size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }

# --- tcplog-modules-KVER -------------------------------------------------------------------
module_package() {
	local kver=$1 kpkg_version=$2 ko=$3 mpkg m mod_version s
	[ -f "$ko" ] || die "$ko is not built"
	# The version moves with the tool's and with the kernel package's (a rebuild for a new upload
	# of the same kernel release must be an upgrade); a native version has no '-'.
	mod_version="$version+${kpkg_version//-/.}"
	mpkg=tcplog-modules-$kver
	m=$work/$mpkg
	install -D -m 0644 "$ko" "$m/usr/lib/modules/$kver/updates/tcplog.ko"
	docs "$mpkg" "$m"
	install -d "$m/DEBIAN"
	for s in postinst postrm; do
		sed "s/@KVER@/$kver/g" "$here/tcplog-modules/$s" >"$m/DEBIAN/$s"
		chmod 0755 "$m/DEBIAN/$s"
	done
	cat >"$m/DEBIAN/control" <<CONTROL
Package: $mpkg
Source: tcplog
Version: $mod_version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $(installed_size "$m")
Depends: linux-image-$kver (= $kpkg_version)
Recommends: tcplog (= $version)
Provides: tcplog-modules, tcplog-modules-abi-$abi
Section: kernel
Priority: optional
Description: tcplog kernel module for Linux $kver
 tcplog logs TCP and UDP activity from inside the kernel: socket events
 (create, bind, listen, accept, connect, close, with the process), a summary
 per TCP connection (bytes, packets, RTT, why it was slow) and, by rule,
 packet headers and payload, to the device /dev/tcplog.
 .
 This package holds tcplog.ko built for Debian's kernel $kver
 (package version $kpkg_version), which has Rust support enabled.
CONTROL
	build_deb "$m" "${mpkg}_${mod_version}_amd64.deb"
}
module_package "$kver" "$kpkg_version" "$ko"
shift 4
while [ $# -ge 3 ]; do
	module_package "$1" "$2" "$3"
	shift 3
done

# --- tcplog ----------------------------------------------------------------------------------
t=$work/tcplog
install -D -m 0755 "$tool" "$t/usr/bin/tcplog"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$t/usr/bin/tcplog"
install -d "$t/usr/share/man/man1"
"$tool" man | gzip -9n >"$t/usr/share/man/man1/tcplog.1.gz"
install -d "$t/usr/share/bash-completion/completions" "$t/usr/share/zsh/vendor-completions" \
	"$t/usr/share/fish/vendor_completions.d"
"$tool" completions bash >"$t/usr/share/bash-completion/completions/tcplog"
"$tool" completions zsh >"$t/usr/share/zsh/vendor-completions/_tcplog"
"$tool" completions fish >"$t/usr/share/fish/vendor_completions.d/tcplog.fish"
install -D -m 0644 "$here/tcplog.service" "$t/usr/lib/systemd/system/tcplog.service"
install -D -m 0644 "$here/tcplog-export.service" "$t/usr/lib/systemd/system/tcplog-export.service"
install -D -m 0644 "$here/tcplog.conf" "$t/etc/tcplog/tcplog.conf"
install -D -m 0644 "$here/tcplog.rules" "$t/etc/tcplog/rules"
(cd /src && cargo tree --offline --locked -p tcplog -e normal,no-proc-macro --prefix none --format '{p}: {l}' 2>/dev/null) |
	sed 's/ (\/src[^)]*)//; s/ (\*)$//' | grep -v '^tcplog' | LC_ALL=C sort -u >"$work/crates"
[ -s "$work/crates" ] || die "cargo tree listed no crates"
docs tcplog "$t" "$work/crates"
install -D -m 0644 "$here/tcplog.lintian-overrides" "$t/usr/share/lintian/overrides/tcplog"
install -d "$t/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$here/tcplog/$s" "$t/DEBIAN/$s"; done
printf '/etc/tcplog/tcplog.conf\n/etc/tcplog/rules\n' >"$t/DEBIAN/conffiles"
# Shared library dependencies, as dpkg-shlibdeps finds them (it wants a debian/control).
mkdir -p "$work/shlibs/debian"
printf 'Source: tcplog\n\nPackage: tcplog\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$t/usr/bin/tcplog" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies of the tool"
cat >"$t/DEBIAN/control" <<CONTROL
Package: tcplog
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $(installed_size "$t")
Depends: $shlibs
Recommends: tcplog-modules-abi-$abi
Section: net
Priority: optional
Description: log TCP and UDP activity from the kernel: tool and service
 tcplog logs TCP and UDP activity from inside the kernel: socket events
 (create, bind, listen, accept, connect, close, with the process), a summary
 per TCP connection (bytes, packets, RTT, why it was slow) and, by rule,
 packet headers and payload.
 .
 This package holds the tcplog tool, which configures the kernel module and
 shows, writes and replays its records, and tcplog.service, which loads the
 module, applies /etc/tcplog/ and writes a rotated log to /var/log/tcplog/;
 when a collector is configured, tcplog-export.service sends the connection
 summaries to it as IPFIX.
 The module itself is in a tcplog-modules-RELEASE package for each kernel.
CONTROL
build_deb "$t" "tcplog_${version}_amd64.deb"
