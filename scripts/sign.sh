#!/usr/bin/env bash
# Signs tcplog.ko with a key of one's own (a Secure Boot machine owner key, say), using the
# kernel's own scripts/sign-file from the headers tree in the build root. The module is stripped
# of its debug information first (as Debian does with its own modules: stripping a signed module
# would break its signature), then signed with SHA-256, the kernel's CONFIG_MODULE_SIG_HASH.
#
# Usage: scripts/sign.sh KEY CERT [IN [OUT]]
#   KEY: the private key (PEM); CERT: its X.509 certificate (PEM or DER);
#   IN: the module (default tcplog.ko, built by `make`); OUT: the signed copy (default
#   target/signed/tcplog.ko). IN is left as it is.
# The private key never enters the build root's file system: sign-file reads it from stdin.
# `make sign KEY=... CERT=...` runs this on the module `make` built.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
die() { printf '[sign] error: %s\n' "$*" >&2; exit 1; }
if [ $# -lt 2 ] || [ $# -gt 4 ]; then die "usage: scripts/sign.sh KEY CERT [IN [OUT]]"; fi
key=$1
cert=$2
in=${3:-$repo/tcplog.ko}
out=${4:-$repo/target/signed/tcplog.ko}
[ -r "$key" ] || die "cannot read the key '$key'"
[ -r "$cert" ] || die "cannot read the certificate '$cert'"
[ -f "$in" ] || die "no module '$in' (run make first)"
in=$(realpath "$in")
mkdir -p "$(dirname "$out")"
out=$(realpath -m "$out")
case "$in" in "$repo"/*) ;; *) die "the module must be inside the repository ($repo): the build root sees only that" ;; esac
case "$out" in "$repo"/*) ;; *) die "the signed module must go inside the repository ($repo)" ;; esac

# TCPLOG_KENV: the build root's environment file when the caller has it already (check.sh).
kenv=${TCPLOG_KENV:-$("$repo/scripts/build-root.sh" | sed -n 's/^KENV=//p')}
[ -n "$kenv" ] || die "the build root did not come up"
# shellcheck source=/dev/null
. "$kenv"
hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\(.*\)"$/\1/p' "$BUILD_ROOT$KDIR_IN_ROOT/.config")
[ -n "$hash" ] || die "the kernel $KVER has no CONFIG_MODULE_SIG_HASH: it does not check module signatures"

# The certificate is public: a copy beside the output is what sign-file reads.
cp "$cert" "$out.cert"
"$repo/scripts/in-root.sh" "$kenv" sh -euc '
	in=$1 out=$2 kdir=$3 hash=$4
	if grep -q "~Module signature appended~" "$in"; then
		echo "[sign] error: $in is signed already" >&2
		exit 1
	fi
	strip --strip-debug --remove-section=.comment --remove-section=.note -o "$out.tmp" "$in"
	"$kdir/scripts/sign-file" "$hash" /dev/stdin "$out.cert" "$out.tmp"
	mv "$out.tmp" "$out"
' sign "/src/${in#"$repo"/}" "/src/${out#"$repo"/}" "$KDIR_IN_ROOT" "$hash" <"$key"
rm -f "$out.cert"
echo "[sign] $out: signed with $hash by $(openssl x509 -in "$cert" -noout -subject 2>/dev/null ||
	openssl x509 -inform DER -in "$cert" -noout -subject)" >&2
echo "$out"
