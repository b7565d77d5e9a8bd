#!/usr/bin/env bash
# `make deb`: builds the module and the tool in the build root (scripts/build.sh), then the Debian
# packages tcplog-modules-RELEASE (the module for Debian's kernel RELEASE) and tcplog (the tool,
# its man page and completions, tcplog.service, tcplog-export.service and /etc/tcplog/) with
# packaging/debian/assemble.sh, checks them with lintian (any warning or error fails) and the units
# with systemd-analyze.
#
# Usage: scripts/deb.sh [--key KEY --cert CERT] [--kernels "KERNEL..."]
#   With a key, the packaged modules are signed with it (scripts/sign.sh); without, they are only
#   stripped of their debug information, as Debian's own modules are.
#   --kernels: a tcplog-modules package for each of those Debian kernels too (as scripts/build.sh
#   takes them: backports/cloud-amd64, unstable/amd64, all, ...), besides the stock kernel's.
# The packages go to target/deb/; their paths are printed on stdout, one a line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
die() { printf '[deb] error: %s\n' "$*" >&2; exit 1; }
key='' cert='' kernels=''
while [ $# -gt 0 ]; do
	case "$1" in
	--key) key=${2:?--key needs a file}; shift 2 ;;
	--cert) cert=${2:?--cert needs a file}; shift 2 ;;
	--kernels) kernels=${2?--kernels needs a list}; shift 2 ;;
	*) die "unknown argument '$1' (usage: scripts/deb.sh [--key KEY --cert CERT] [--kernels LIST])" ;;
	esac
done
if { [ -n "$key" ] && [ -z "$cert" ]; } || { [ -z "$key" ] && [ -n "$cert" ]; }; then
	die "--key and --cert go together"
fi

start=$(date +%s)
# TCPLOG_KENV: the caller has just built (scripts/build.sh) and gives its environment file.
if [ -n "${TCPLOG_KENV:-}" ] && [ -z "$kernels" ]; then
	kenv=$TCPLOG_KENV
	modules=''
else
	built=$("$repo/scripts/build.sh" --kernels "$kernels") || die "the build failed"
	kenv=$(sed -n 's/^KENV=//p' <<<"$built")
	modules=$(sed -n 's/^MODULE=//p' <<<"$built")
fi
[ -n "$kenv" ] || die "the build failed"
# shellcheck source=/dev/null
. "$kenv"
out=$repo/target/deb
rm -rf "$out"
mkdir -p "$out"

# Strips (or signs) one kernel's module into target/deb/module/KVER/; prints its path in the root.
prepare_ko() {
	local kkenv=$1 src=$2 kver=$3 dst
	dst=$out/module/$kver/tcplog.ko
	mkdir -p "${dst%/*}"
	if [ -n "$key" ]; then
		TCPLOG_KENV=$kkenv "$repo/scripts/sign.sh" "$key" "$cert" "$repo/$src" "$dst" >/dev/null
	else
		"$repo/scripts/in-root.sh" "$kenv" strip --strip-debug --remove-section=.comment \
			--remove-section=.note -o "/src/${dst#"$repo"/}" "/src/$src"
	fi
	echo "/src/${dst#"$repo"/}"
}
ko=$(prepare_ko "$kenv" tcplog.ko "$KVER")
# The other kernels' modules packages: "KVER KPKG_VERSION KO" each.
extra=()
while read -r kkenv src; do
	[ -n "$kkenv" ] || continue
	read -r kver kpkg < <(. "$kkenv" && echo "$KVER $KPKG_VERSION")
	[ "$kver" != "$KVER" ] || continue
	extra+=("$kver" "$kpkg" "$(prepare_ko "$kkenv" "$src" "$kver")")
done <<<"$modules"

debs=$("$repo/scripts/in-root.sh" "$kenv" bash /src/packaging/debian/assemble.sh "$KVER" \
	"$KPKG_VERSION" "$ko" /src/target/deb ${extra[@]+"${extra[@]}"})
[ -n "$debs" ] || die "no package was made"

# lintian: errors and warnings fail; informational tags are shown, to be judged.
in_debs=()
while read -r d; do in_debs+=("$d"); done <<<"$debs"
lint=$("$repo/scripts/in-root.sh" "$kenv" lintian --fail-on error,warning --display-info \
	"${in_debs[@]}" 2>&1 | sed '/^running with root privileges is not recommended!$/d') ||
	{ printf '%s\n' "$lint" >&2; die "lintian found problems"; }
[ -z "$lint" ] || printf '[deb] lintian says (information only):\n%s\n' "$lint" >&2

# The units: systemd-analyze verify (syntax, directives, executables: all but the tool, which the
# build root does not have installed; the export unit's dependency on tcplog.service is found
# beside it) and the exposure score of each one's sandbox.
"$repo/scripts/in-root.sh" "$kenv" sh -euc '
	d=$(mktemp -d)
	cp /src/packaging/debian/tcplog.service /src/packaging/debian/tcplog-export.service "$d/"
	systemd-analyze verify --man=no "$d/tcplog.service" "$d/tcplog-export.service" 2>&1 |
		grep -v "^tcplog\(-export\)\?\.service: Command /usr/bin/tcplog is not executable" || true
	dpkg-deb -x "$1" "$d/pkg"
	for u in tcplog.service tcplog-export.service; do
		printf "%s: " "$u"
		systemd-analyze security --offline=yes --root="$d/pkg" --no-pager "$u" 2>&1 | tail -n 1
	done
	rm -rf "$d"
' analyze "$(grep '/tcplog_' <<<"$debs")" | sed 's/^/[deb] /' >&2

echo "[deb] packages built and checked in $(($(date +%s) - start)) s" >&2
printf '%s\n' "${debs//\/src\//$repo/}"
